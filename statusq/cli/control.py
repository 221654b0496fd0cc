"""``statusq control``: broadcast a command to every daemon, on any backend."""

from __future__ import annotations

import click

from statusq.cli.helpers import runtime
from statusq.commands import COMMANDS

EPILOG = """\b
Examples:
  statusq control update-site example.org     # a new or changed site file, re-read everywhere
  statusq control remove-site example.net
  statusq control reload
\b
See docs/flow-control.md (make docs builds it into site/).
"""


@click.command(epilog=EPILOG)
@click.argument("command", type=click.Choice(sorted(COMMANDS)))
@click.argument("site", required=False)
@click.pass_context
def control(ctx: click.Context, command: str, site: str | None) -> int:
    """Tell every daemon to update-site SITE, remove-site SITE, reload, restart or shutdown.

    Daemons apply it between items.  A removed site's items are dead-lettered with that reason
    until an update-site brings it back; the removal is kept in the shared store (db_url), so
    daemons started or reconnecting later follow it too.
    """
    text = f"{command} {site}" if site else command
    with runtime(ctx).queue_manager() as qm:
        sent = qm.send_control(text)
    if sent:
        click.echo(f"sent: {text}")
    else:
        click.echo(f"stored: {text} (no control channel: daemons read it within [queue] site_recheck)")
    return 0
