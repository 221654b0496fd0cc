"""``statusq queues``: the periodic queues' accounting, their settings, and forced runs."""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import click

from statusq.cli.helpers import echo_table, runtime
from statusq.dispatcher import make_dispatcher
from statusq.dispatcher.status import TABLE_HEADERS, current_views, queue_view, table_row
from statusq.periodic import QueueRegistry, QueueSpec
from statusq.units import parse_duration

if TYPE_CHECKING:
    from statusq.dispatcher.store import DispatchStore

EPILOG = """\b
Examples:
  statusq queues                              # name, kind, schedule, last run, status
  statusq queues --json
  statusq queues set cron --frequency 1h --items 20
  statusq queues set cron --enabled false     # every daemon stops running it, no restart
  statusq queues set cron --reset             # back to the plugin's declared settings
  statusq queues run cron                     # a run now, whatever its schedule
\b
See docs/periodic.md (make docs builds it into site/).
"""


def _specs(ctx: click.Context) -> QueueRegistry:
    return runtime(ctx).registry.queues


def _spec(ctx: click.Context, name: str) -> QueueSpec:
    specs = _specs(ctx)
    spec = specs.get(name)
    if spec is None:
        known = ", ".join(specs.names()) or "none: no plugin declares a queue"
        raise click.BadParameter(f"no queue {name!r} (known: {known})", param_hint="NAME")
    return spec


def _store(ctx: click.Context) -> DispatchStore:
    from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415 -- SQLAlchemy: only for this command

    return DispatchStore(runtime(ctx).config.db_url)


@click.group(invoke_without_command=True, epilog=EPILOG)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output, with every counter.")
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> int:
    """Show the periodic queues: schedule, items per run, last and next run, status
    (ok, running, hung, error, disabled)."""
    if ctx.invoked_subcommand is not None:
        return 0
    views = current_views(runtime(ctx).config.db_url, list(_specs(ctx)))
    if as_json:
        click.echo(json.dumps([v.as_json() for v in views], indent=2))
    elif not views:
        click.echo("no periodic queues: no plugin declares one")
    else:
        now = time.time()
        echo_table(TABLE_HEADERS, [table_row(v, now) for v in views])
        for view in views:
            if view.status == "hung":
                click.echo(
                    f"\n{view.name}: run {view.run} hung, running for {view.running_for:.0f}s "
                    f"(timeout {view.timeout:.0f}s), busy with {view.current_item or 'nothing reported'}"
                )
            elif view.status == "error":
                click.echo(f"\n{view.name}: {view.last_error}")
    return 0


def _positive_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter("must be longer than 0")
    return seconds


@queues.command("set", epilog=EPILOG)
@click.argument("name")
@click.option("--enabled", type=click.BOOL, default=None, help="true or false.")
@click.option("--frequency", callback=_positive_duration, metavar="DURATION", help="Period: 30s, 5m, 1h.")
@click.option(
    "--items",
    type=click.IntRange(1),
    default=None,
    help="Items per run (a batch queue then runs total/items times per period).",
)
@click.option("--timeout", callback=_positive_duration, metavar="DURATION", help="A run longer than this is hung.")
@click.option("--reset", is_flag=True, help="Drop every override first: the plugin's declared settings.")
@click.pass_context
def set_(
    ctx: click.Context,
    name: str,
    enabled: bool | None,
    frequency: float | None,
    items: int | None,
    timeout: float | None,
    reset: bool,
) -> int:
    """Change a queue's settings; stored, and applied by every daemon at its next tick."""
    spec = _spec(ctx, name)
    given = {"enabled": enabled, "frequency": frequency, "items": items, "timeout": timeout}
    values: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
    if not values and not reset:
        raise click.UsageError("nothing to set: give --enabled, --frequency, --items, --timeout or --reset")
    if reset:
        values = {"enabled": None, "frequency": None, "items": None, "timeout": None} | values
    store = _store(ctx)
    try:
        row = store.change_settings(spec, values, time.time())
    finally:
        store.close()
    now = time.time()
    echo_table(TABLE_HEADERS, [table_row(queue_view(spec, row, now), now)])
    return 0


@queues.command(epilog=EPILOG)
@click.argument("name")
@click.pass_context
def run(ctx: click.Context, name: str) -> int:
    """Dispatch a run of NAME now, whatever its schedule (even disabled); workers do the work.

    Refused while its previous run is still going (not yet hung) or another dispatcher is busy
    with it: exit 75, try again.
    """
    spec = _spec(ctx, name)
    rt = runtime(ctx)
    with rt.queue_manager() as qm:
        dispatcher = make_dispatcher(rt.config, rt.registry.queues, qm)
        try:
            report = dispatcher.run_now(spec, forced=True)
        finally:
            dispatcher.store.close()
    click.echo(str(report))
    if report.status in ("running", "busy"):
        return os.EX_TEMPFAIL
    if report.status in ("failed", "lost"):
        return os.EX_UNAVAILABLE
    return 0
