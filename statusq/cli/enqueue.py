"""``statusq enqueue``: queue items from a shell, a cron job or a deploy script."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from statusq.cli.helpers import runtime
from statusq.codec import is_json
from statusq.defaults import ENQUEUE_LINES_BATCH
from statusq.errors import DataError, StatusqError
from statusq.item import Item
from statusq.produce import prepare_batch
from statusq.queues.base import QueueManager


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON: {exc}") from None


EPILOG = """\b
Examples:
  statusq enqueue --site example.org demo '{"text": "hello"}'
  statusq enqueue --delay 10m --expires 1h digest '{"user": 7}'
  echo '{"text": "hi"}' | statusq enqueue --site example.org demo -
  statusq enqueue --lines demo - < items.jsonl     # one item per line, sent in batches
  statusq enqueue --key cron:example.org --unique-for 10m cron '{}'   # at most one per 10 minutes
\b
See docs/enqueueing.md (make docs builds it into site/).
"""


@click.command(epilog=EPILOG)
@click.option("--site", default=None, help="Site the item belongs to (default: [sites] default).")
@click.option("--priority", type=click.IntRange(0, 9), default=None, help="0 (lowest) to 9.")
@click.option(
    "--content-type",
    default="application/json",
    show_default=True,
    help="Body type; application/xml is checked with the hardened parser, others sent as-is.",
)
@click.option("--delay", default=None, help="Not before this long from now: seconds or e.g. '90s', '5m', '2h'.")
@click.option("--expires", default=None, help="Not run after this long from now (dead-lettered as expired).")
@click.option("--key", default=None, help="Unique key: while its item is pending, nothing is added (prints its id).")
@click.option("--unique-for", default=None, help="With --key: how long the key stays taken after success ('10m').")
@click.option("--rate-key", default=None, help="The bucket of the transport's key_rate_limit it counts against.")
@click.option(
    "--lines",
    is_flag=True,
    help=f"PAYLOAD is a stream of JSON documents, one per line (JSON Lines): one item each, sent in "
    f"batches of {ENQUEUE_LINES_BATCH:,} (one broker or database transaction each).",
)
@click.argument("transport")
@click.argument("payload")
@click.pass_context
def enqueue(
    ctx: click.Context,
    site: str | None,
    priority: int | None,
    content_type: str,
    delay: str | None,
    expires: str | None,
    key: str | None,
    unique_for: str | None,
    rate_key: str | None,
    lines: bool,
    transport: str,
    payload: str,
) -> int:
    """Queue PAYLOAD for TRANSPORT; PAYLOAD '-' reads it from standard input.

    Nothing is queued unless every payload given is valid: a bad one exits 65.  With --lines,
    a backend failing part-way leaves the batches before it queued, and says how many.
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
    if lines and key is not None:
        raise click.BadParameter("one key for many lines would keep only the first", param_hint="--key")
    items = [
        Item(body, transport, site, delay, None, expires, None, priority, content_type, key, unique_for, rate_key)
        for body in bodies
    ]
    with rt.queue_manager() as qm:
        if not lines:
            [item] = items
            click.echo(
                qm.enqueue(
                    item.payload,
                    transport,
                    site,
                    None,
                    priority,
                    content_type,
                    delay=delay,
                    expires=expires,
                    key=key,
                    unique_for=unique_for,
                    rate_key=rate_key,
                )
            )
            return 0
        done = _enqueue_batches(qm, items)
    click.echo(f"enqueued {done} item(s)")
    return 0


def _enqueue_batches(qm: QueueManager, items: list[Item]) -> int:
    """Every item checked before anything is sent, then one ``enqueue_many`` per batch."""
    batches = [items[n : n + ENQUEUE_LINES_BATCH] for n in range(0, len(items), ENQUEUE_LINES_BATCH)]
    for batch in batches:
        prepare_batch(batch, qm.default_site, qm.clock(), ENQUEUE_LINES_BATCH)
    done = 0
    for batch in batches:
        try:
            done += len(qm.enqueue_many(batch))
        except StatusqError as exc:
            if done:
                exc.args = (f"{exc} (the first {done:,} of {len(items):,} item(s) were enqueued)",)
            raise
    return done
