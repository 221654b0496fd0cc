"""``statusq status``: what is waiting, retrying, running and dead, per site and transport."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from statusq.cli.helpers import echo_table, runtime
from statusq.cli.pauses import echo_pauses
from statusq.errors import StatusqError
from statusq.queues.base import BacklogRow
from statusq.state import WORKER_COLUMNS, daemon_summary, running_daemons, worker_row

EPILOG = """\b
Examples:
  statusq status
  statusq --config /etc/statusq/statusq.toml status --json
\b
See docs/daemon.md (make docs builds it into site/).
"""


@click.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> int:
    """Show the backlog per site and transport, the pauses, and this host's daemons: workers,
    restarts.

    A backend that cannot count its backlog cheaply (STOMP: the broker's queue depths are the
    broker's to tell, see /metrics) shows it as unknown ("?"; null in JSON)."""
    with runtime(ctx).queue_manager() as qm:
        rows = qm.backlog()
        try:
            held: list[dict[str, object]] | None = [asdict(p) for p in qm.pauses()]
        except StatusqError as exc:  # the shared store is down: the rest is still worth showing
            click.echo(f"pauses: unknown ({exc})", err=True)
            held = None
    daemons = running_daemons(runtime(ctx).config.var_dir)
    if as_json:
        found = [{**asdict(s), "processes": [asdict(w) for w in workers]} for s, workers in daemons]
        backlog = None if rows is None else [asdict(r) for r in rows]
        report = {"backlog": backlog, "totals": totals(rows), "pauses": held, "daemons": found}
        click.echo(json.dumps(report, indent=2))
        return 0
    if rows is None:
        subsystem = runtime(ctx).config.queue.subsystem
        click.echo(f"backlog: ? (the {subsystem} backend cannot count it cheaply: see /metrics)")
    elif not rows:
        click.echo("no items queued, none dead")
    else:
        echo_table(
            ["SITE", "TRANSPORT", "READY", "RETRYING", "IN FLIGHT", "DEAD"],
            [[r.site, r.transport, r.ready, r.delayed, r.in_flight, r.dead] for r in rows],
        )
    if held:
        click.echo("")
        echo_pauses(held)
    elif held is None:
        click.echo("\npauses: ? (the shared store at db_url cannot be read)")
    for supervisor, workers in daemons:
        click.echo("\n" + daemon_summary(supervisor))
        echo_table(list(WORKER_COLUMNS), [worker_row(w) for w in workers])
    return 0


def totals(rows: list[BacklogRow] | None) -> dict[str, int | None]:
    """Sums over sites and transports; each None (unknown) when the backend cannot count."""
    states = ("ready", "delayed", "in_flight", "dead")
    return {k: None if rows is None else sum(getattr(r, k) for r in rows) for k in states}
