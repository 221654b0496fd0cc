"""``statusq cancel`` and ``statusq purge``: take items back that should not run."""

from __future__ import annotations

import click

from statusq.cli.helpers import runtime

CANCEL_EPILOG = """\b
Examples:
  statusq cancel 1234 1235
  statusq cancel --reason "sent twice" 9f1c2e...
\b
See docs/enqueueing.md (make docs builds it into site/).
"""

PURGE_EPILOG = """\b
Examples:
  statusq purge --site old.example.org
  statusq purge --site example.org --transport ostatus --reason "remote gone"
\b
See docs/enqueueing.md (make docs builds it into site/).
"""


@click.command(epilog=CANCEL_EPILOG)
@click.option("--reason", default="by an operator", show_default=True, help="Logged when a dropped item arrives.")
@click.argument("ids", nargs=-1, required=True)
@click.pass_context
def cancel(ctx: click.Context, reason: str, ids: tuple[str, ...]) -> int:
    """Cancel items by id: deleted when queued, where the backend can; otherwise (in hand, or
    on a broker) dropped unrun when they arrive."""
    with runtime(ctx).queue_manager() as qm:
        done = qm.cancel(ids, reason)
    unknown = len(ids) - len(done.removed) - len(done.remembered)
    click.echo(
        f"cancelled {len(done.removed)} queued item(s); {len(done.remembered)} to be dropped when they arrive"
        + (f"; {unknown} not found" if unknown else "")
    )
    return 0


@click.command(epilog=PURGE_EPILOG)
@click.option("--site", default=None, help="Every item of this site...")
@click.option("--transport", default=None, help="...and/or of this transport.")
@click.option("--reason", default="by an operator", show_default=True, help="Logged when a dropped item arrives.")
@click.pass_context
def purge(ctx: click.Context, site: str | None, transport: str | None, reason: str) -> int:
    """Drop every item of a site and/or transport enqueued until now (not dead letters: see
    `statusq deadletters purge`)."""
    with runtime(ctx).queue_manager() as qm:
        done = qm.purge(site, transport, reason)
    count = "an unknown number of" if done.removed is None else str(done.removed)
    click.echo(f"purged {count} queued item(s); those in hand or on a broker are dropped when they arrive")
    return 0
