"""``statusq enqueue``: queue items from a shell, a cron job or a deploy script."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from statusq.cli.helpers import runtime
from statusq.codec import is_json
from statusq.errors import DataError


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc}") from None


@click.command()
@click.option("--site", default=None, help="Site the item belongs to (default: [sites] default).")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0 (lowest) to 9.")
@click.option(
    "--content-type",
    default="application/json",
    show_default=True,
    help="Body type; application/xml is checked with the hardened parser, others sent as-is.",
)
@click.option(
    "--lines",
    is_flag=True,
    help="PAYLOAD is a stream of JSON documents, one per line (JSON Lines): one item each.",
)
@click.argument("transport")
@click.argument("payload")
@click.pass_context
def enqueue(
    ctx: click.Context,
    site: str | None,
    priority: int | None,
    content_type: str,
    lines: bool,
    transport: str,
    payload: str,
) -> int:
    """Queue PAYLOAD for TRANSPORT; PAYLOAD '-' reads it from standard input.

    Nothing is queued unless every payload given is valid: a bad one exits 65.
    """
    text = sys.stdin.read() if payload == "-" else payload
    where = "stdin" if payload == "-" else "PAYLOAD"
    if lines:
        if not is_json(content_type):
            raise click.BadParameter("--lines takes JSON documents", param_hint="--lines")
        bodies = [_parse_json(line, f"{where} line {n}") for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    elif is_json(content_type):
        bodies = [_parse_json(text, where)]
    else:
        bodies = [text]
    rt = runtime(ctx)
    site = site or rt.config.sites.default
    with rt.queue_manager() as qm:
        for body in bodies:
            item_id = qm.enqueue(body, transport, site=site, priority=priority, content_type=content_type)
            if not lines:
                click.echo(item_id)
    if lines:
        click.echo(f"enqueued {len(bodies)} item(s)")
    return 0
