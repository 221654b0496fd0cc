"""``statusq status``: what is waiting, retrying, running and dead, per site and transport."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from statusq.cli.helpers import echo_table, runtime
from statusq.cli.limits import configured, echo_limits, echo_removed, removed_sites, with_running
from statusq.cli.pauses import echo_pauses
from statusq.cluster import CLUSTER_COLUMNS, cluster_json, cluster_row
from statusq.cluster import read as read_cluster
from statusq.errors import StatusqError
from statusq.queues.base import BacklogRow
from statusq.state import WORKER_COLUMNS, daemon_summary, running_daemons, worker_row

if TYPE_CHECKING:
    from statusq.queues.db.daemons import DaemonRow

EPILOG = """\b
Examples:
  statusq status
  statusq status --all
  statusq --config /etc/statusq/statusq.toml status --json
\b
See docs/daemon.md and docs/monitoring.md (make docs builds them into site/).
"""


@click.command(epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--all", "every_host", is_flag=True, help="Also every host's daemons, from their heartbeats in the shared store."
)
@click.pass_context
def status(ctx: click.Context, as_json: bool, every_host: bool) -> int:
    """Show the backlog per site and transport, the pauses, the removed sites, the rate limits
    and concurrency caps (with the slots in use now), and this host's daemons: workers,
    restarts.  With --all, also every daemon of the cluster (every host sharing db_url),
    alive or gone (no heartbeat for 3 beats).

    A backend that cannot count its backlog cheaply (STOMP: the broker's queue depths are the
    broker's to tell, see /metrics) shows it as unknown ("?"; null in JSON)."""
    with runtime(ctx).queue_manager() as qm:
        rows = qm.backlog()
        try:
            held: list[dict[str, object]] | None = [asdict(p) for p in qm.pauses()]
        except StatusqError as exc:  # the shared store is down: the rest is still worth showing
            click.echo(f"pauses: unknown ({exc})", err=True)
            held = None
        delayed = delayed_summary(qm)
    config = runtime(ctx).config
    removed = removed_sites(config)
    limits = with_running(config, configured(config))
    daemons = running_daemons(config.var_dir)
    cluster = cluster_view(ctx) if every_host else None
    if as_json:
        found = [{**asdict(s), "processes": [asdict(w) for w in workers]} for s, workers in daemons]
        backlog = None if rows is None else [asdict(r) for r in rows]
        report: dict[str, Any] = {
            "backlog": backlog,
            "totals": totals(rows),
            "pauses": held,
            "removed_sites": removed,
            "limits": [asdict(r) for r in limits],
            "site_rate_limit": config.sites.rate_limit,
            "daemons": found,
        }
        if delayed is not None:
            report["delayed_in_store"] = delayed
        if every_host:
            report["cluster"] = None if cluster is None else [cluster_json(d) for d in cluster]
        click.echo(json.dumps(report, indent=2))
        return 0
    echo_backlog(rows, config.queue.subsystem)
    if delayed is not None:
        echo_delayed(delayed)
    if held:
        click.echo("")
        echo_pauses(held)
    elif held is None:
        click.echo("\npauses: ? (the shared store at db_url cannot be read)")
    if removed:
        click.echo("")
        echo_removed(removed)
    if limits or config.sites.rate_limit:
        click.echo("")
        echo_limits(limits, config)
    for supervisor, workers in daemons:
        click.echo("\n" + daemon_summary(supervisor))
        echo_table(list(WORKER_COLUMNS), [worker_row(w) for w in workers])
    if every_host:
        click.echo("\ncluster (every daemon beating in the shared store at db_url):")
        if cluster is None:
            click.echo("? (the shared store at db_url cannot be read)")
        elif not cluster:
            click.echo("no daemon has beaten")
        else:
            echo_table(list(CLUSTER_COLUMNS), [cluster_row(d) for d in cluster])
    return 0


def echo_backlog(rows: list[BacklogRow] | None, subsystem: str) -> None:
    if rows is None:
        click.echo(f"backlog: ? (the {subsystem} backend cannot count it cheaply: see /metrics)")
    elif not rows:
        click.echo("no items queued, none dead")
    else:
        echo_table(
            ["SITE", "TRANSPORT", "READY", "RETRYING", "IN FLIGHT", "DEAD"],
            [[r.site, r.transport, r.ready, r.delayed, r.in_flight, r.dead] for r in rows],
        )


def delayed_summary(qm: object) -> dict[str, Any] | None:
    """Delayed items waiting in the shared store (a broker's, ``[queue.stomp] delays``); None
    where there are none to tell of (another backend, or nothing ever held)."""
    delays = getattr(qm, "delays", None)  # StompQueueManager's StoreDelays
    if delays is None:
        return None
    try:
        found = delays.summary()
    except StatusqError as exc:
        return {"error": str(exc)}
    return None if found is None else asdict(found)


def echo_delayed(delayed: dict[str, Any]) -> None:
    if "error" in delayed:
        click.echo(f"delayed in the shared store: ? ({delayed['error']})")
        return
    line = f"delayed in the shared store: {delayed['waiting']} waiting"
    if delayed["late"]:
        line += (
            f", {delayed['late']} due over {delayed['late_after']:g} s ago and not sent: "
            "is a daemon running with this db_url, and is the broker taking items?"
        )
    click.echo(line)


def cluster_view(ctx: click.Context) -> list[DaemonRow] | None:
    """Every daemon of the cluster; None: the shared store cannot be read (said on stderr)."""
    try:
        return read_cluster(runtime(ctx).config)
    except StatusqError as exc:
        click.echo(f"cluster: unknown ({exc})", err=True)
        return None


def totals(rows: list[BacklogRow] | None) -> dict[str, int | None]:
    """Sums over sites and transports; each None (unknown) when the backend cannot count."""
    states = ("ready", "delayed", "in_flight", "dead")
    return {k: None if rows is None else sum(getattr(r, k) for r in rows) for k in states}
