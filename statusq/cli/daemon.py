"""``statusq daemon``: run a worker in the foreground."""

from __future__ import annotations

import logging

import click

from statusq.cli.helpers import runtime, setup_logging
from statusq.units import parse_duration

log = logging.getLogger("statusq.daemon")


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@click.option(
    "--idle-exit",
    metavar="SECONDS",
    callback=_duration,
    help="Exit 0 after this long with nothing to do (tests, cron-style runs).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Serve only these handler groups (repeatable; default: all).",
)
@click.pass_context
def daemon(ctx: click.Context, idle_exit: float | None, groups: tuple[str, ...]) -> int:
    """Run a worker in the foreground until SIGTERM/SIGINT (or --idle-exit)."""
    from statusq.worker import build_master

    rt = runtime(ctx)
    setup_logging(rt.config.log.level)
    unknown = set(groups) - rt.registry.groups()
    if unknown:
        raise click.BadParameter(
            f"no handler registered in group(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(rt.registry.groups())) or 'none'})",
            param_hint="--group",
        )
    master = build_master(rt, groups=set(groups) or None, idle_exit=idle_exit)
    master.install_signal_handlers()
    code = master.run()
    log.info("stopped (exit %d)", code)
    return code
