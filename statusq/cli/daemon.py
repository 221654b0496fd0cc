"""``statusq daemon``: a supervisor and its worker processes, in the foreground by default."""

from __future__ import annotations

import logging
import re

import click

from statusq import logs
from statusq.cli.helpers import runtime
from statusq.config import LogConfig
from statusq.control import check_signing
from statusq.daemon.detach import StartupReport, detach, redirect_output
from statusq.daemon.pidfile import PidFile, PidFileError
from statusq.daemon.supervisor import DaemonOptions, QueueDaemon
from statusq.defaults import CONCURRENCY_MAX, NAME_PATTERN
from statusq.reporting import sentry
from statusq.tracing import setup as tracing
from statusq.units import parse_duration

log = logging.getLogger("statusq.daemon")

EPILOG = """\b
Signals (to the supervisor, whose pid --pidfile records):
  TERM, INT  finish the items in hand, then exit 0 (a second one kills the workers)
  HUP        re-read the config, replace the workers one by one
  USR1       log what every worker is doing
\b
Examples:
  statusq --config /etc/statusq/statusq.toml daemon
  statusq daemon --workers 4 --group main
  statusq daemon --workers 2 --concurrency 16   # 2 processes x 16 items in hand
  statusq daemon --daemon --pidfile /run/statusq.pid --logfile /var/log/statusq.log
  statusq daemon --idle-exit 5        # drain the queue, then exit
\b
See docs/daemon.md (make docs builds it into site/).
"""


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _groups(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    # Names only: whether a plugin registers the group is for the workers to say, as only they
    # import plugins.
    for group in value:
        if not re.match(NAME_PATTERN, group):
            raise click.BadParameter(f"{group!r} is not a group name")
    return value


def worker_logging(config: LogConfig, slot: int) -> None:
    """A worker's log lines carry its slot: several processes write to one stream."""
    logs.configure(config, worker=slot)


@click.command(epilog=EPILOG)
@click.option(
    "--workers",
    "--threads",
    "workers",
    type=click.IntRange(1, 1024),
    metavar="N",
    help="Worker processes (default: [daemon] workers, else one per CPU); --threads is StatusNet's name "
    "and also means processes.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, CONCURRENCY_MAX),
    metavar="N",
    help="Items each worker process has in hand at once: threads for sync handlers, tasks for async "
    "ones (default: [daemon] concurrency, else 1).",
)
@click.option(
    "--idle-exit",
    metavar="SECONDS",
    callback=_duration,
    help="Workers exit after this long with nothing to do, the daemon once all have (tests, cron-style runs).",
)
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    callback=_groups,
    help="Serve only these handler groups (repeatable; default: all).",
)
@click.option(
    "--pidfile",
    type=click.Path(dir_okay=False),
    help="Record the supervisor's pid; refuse to start if a running daemon holds it.",
)
@click.option(
    "--daemon",
    "detach_",
    is_flag=True,
    help="Detach from the terminal (foreground is the default, as systemd and supervisord want).",
)
@click.option(
    "--logfile",
    type=click.Path(dir_okay=False),
    help="Append all output here (default: stderr; with --daemon: /dev/null).",
)
@click.pass_context
def daemon(
    ctx: click.Context,
    workers: int | None,
    concurrency: int | None,
    idle_exit: float | None,
    groups: tuple[str, ...],
    pidfile: str | None,
    detach_: bool,
    logfile: str | None,
) -> int:
    """Run the supervisor and its workers until SIGTERM/SIGINT (or --idle-exit)."""
    config = runtime(ctx).config  # validated here, so a bad file stops us before any fork
    check_signing(config)
    tracing.check(config)
    sentry.check(config)
    logs.configure(config.log)
    report: StartupReport | None = None
    if detach_:
        report = detach(logfile)  # only the detached daemon comes back
    elif logfile:
        redirect_output(logfile)
    lock = PidFile(pidfile) if pidfile else None
    if lock is not None:
        try:
            lock.acquire()
        except PidFileError as exc:
            if report is not None:
                report.failed(exc.exit_code, str(exc))
            raise
    options = DaemonOptions(
        workers=workers,
        concurrency=concurrency,
        groups=frozenset(groups) or None,
        idle_exit=idle_exit,
        config_path=ctx.ensure_object(dict).get("config_path"),
        log_setup=worker_logging,
        close_fds=(lock.fd,) if lock is not None and lock.fd is not None else (),
    )
    try:
        return QueueDaemon(config, options, on_started=report.ok if report else None).run()
    finally:
        if lock is not None:
            lock.release()
