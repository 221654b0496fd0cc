"""``statusq deadletters``: inspect, requeue and purge what could not be handled."""

from __future__ import annotations

import json
import time

import click

from statusq.cli.helpers import echo_table, runtime


def _ids(ids: tuple[str, ...], all_: bool) -> list[str] | None:
    if bool(ids) == all_:
        raise click.UsageError("name dead-letter IDs or --all (not both)")
    return None if all_ else list(ids)


EPILOG = """\b
Examples:
  statusq deadletters list --limit 20
  statusq deadletters retry 42 43
  statusq deadletters retry --all
  statusq deadletters purge --all
\b
See docs/cli.md (make docs builds it into site/).
"""


@click.group(epilog=EPILOG)
def deadletters() -> None:
    """Items that failed max_retries times, or could never be handled."""


@deadletters.command("list", epilog=EPILOG)
@click.option("--limit", type=click.IntRange(1), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, with bodies.")
@click.pass_context
def list_(ctx: click.Context, limit: int, as_json: bool) -> int:
    """List dead letters, newest first."""
    with runtime(ctx).queue_manager() as qm:
        letters = qm.dead_letters(limit)
    if as_json:
        out = [
            {
                "id": d.id,
                "site": d.site,
                "transport": d.transport,
                "attempts": d.attempts,
                "error": d.error,
                "enqueued_at": d.enqueued_at,
                "dead_at": d.dead_at,
                "content_type": d.content_type,
                "body": d.body.decode("utf-8", "replace"),
            }
            for d in letters
        ]
        click.echo(json.dumps(out, indent=2))
        return 0
    if not letters:
        click.echo("no dead letters")
        return 0
    echo_table(
        ["ID", "SITE", "TRANSPORT", "ATTEMPTS", "DIED", "ERROR"],
        [
            [
                d.id,
                d.site,
                d.transport,
                d.attempts,
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.dead_at)),
                d.error[:100],
            ]
            for d in letters
        ],
    )
    return 0


@deadletters.command(epilog=EPILOG)
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@click.pass_context
def retry(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> int:
    """Put dead letters back on their queue with a fresh attempt count."""
    with runtime(ctx).queue_manager() as qm:
        moved = qm.requeue_dead(_ids(ids, all_))
    click.echo(f"requeued {moved} item(s)")
    return 0 if moved or all_ else 1


@deadletters.command(epilog=EPILOG)
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@click.pass_context
def purge(ctx: click.Context, ids: tuple[str, ...], all_: bool) -> int:
    """Delete dead letters for good."""
    with runtime(ctx).queue_manager() as qm:
        gone = qm.purge_dead(_ids(ids, all_))
    click.echo(f"purged {gone} item(s)")
    return 0 if gone or all_ else 1
