"""``statusq status``: what is waiting, retrying, running and dead, per site and transport."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from statusq.cli.helpers import echo_table, runtime


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> int:
    """Show the backlog per site and transport."""
    with runtime(ctx).queue_manager() as qm:
        rows = qm.backlog()
    if as_json:
        totals = {k: sum(getattr(r, k) for r in rows) for k in ("ready", "delayed", "in_flight", "dead")}
        click.echo(json.dumps({"backlog": [asdict(r) for r in rows], "totals": totals}, indent=2))
        return 0
    if not rows:
        click.echo("no items queued, none dead")
        return 0
    echo_table(
        ["SITE", "TRANSPORT", "READY", "RETRYING", "IN FLIGHT", "DEAD"],
        [[r.site, r.transport, r.ready, r.delayed, r.in_flight, r.dead] for r in rows],
    )
    return 0
