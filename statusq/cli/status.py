"""``statusq status``: what is waiting, retrying, running and dead, per site and transport."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from statusq.cli.helpers import echo_table, runtime
from statusq.state import WORKER_COLUMNS, daemon_summary, running_daemons, worker_row


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> int:
    """Show the backlog per site and transport, and this host's daemons: workers, restarts."""
    with runtime(ctx).queue_manager() as qm:
        rows = qm.backlog()
    daemons = running_daemons(runtime(ctx).config.var_dir)
    if as_json:
        totals = {k: sum(getattr(r, k) for r in rows) for k in ("ready", "delayed", "in_flight", "dead")}
        found = [{**asdict(s), "processes": [asdict(w) for w in workers]} for s, workers in daemons]
        click.echo(json.dumps({"backlog": [asdict(r) for r in rows], "totals": totals, "daemons": found}, indent=2))
        return 0
    if not rows:
        click.echo("no items queued, none dead")
    else:
        echo_table(
            ["SITE", "TRANSPORT", "READY", "RETRYING", "IN FLIGHT", "DEAD"],
            [[r.site, r.transport, r.ready, r.delayed, r.in_flight, r.dead] for r in rows],
        )
    for supervisor, workers in daemons:
        click.echo("\n" + daemon_summary(supervisor))
        echo_table(list(WORKER_COLUMNS), [worker_row(w) for w in workers])
    return 0
