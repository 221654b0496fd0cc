"""``statusq dispatch``: one dispatcher tick from a crontab (Aegir's ``hosting-dispatch``).

For hosts that run no daemon with the dispatcher, or as a belt to its braces: runs are claimed in
the database, so this and any number of daemons never dispatch one run twice.
"""

from __future__ import annotations

import os
import time

import click

from statusq.cli.helpers import runtime, setup_logging
from statusq.dispatcher import make_dispatcher

EPILOG = """\b
Examples (crontab):
  * * * * *  statusq --config /etc/statusq/statusq.toml dispatch
  */5 * * * * statusq dispatch --queue cron --force
\b
See docs/periodic.md (make docs builds it into site/).
"""


@click.command(epilog=EPILOG)
@click.option("--queue", "names", multiple=True, metavar="NAME", help="Only these queues (repeatable).")
@click.option("--force", is_flag=True, help="Run the chosen queues now, due or not.")
@click.pass_context
def dispatch(ctx: click.Context, names: tuple[str, ...], force: bool) -> int:
    """Report hung runs, dispatch every due queue's run completely, and exit.

    Exit 0 unless a run failed (69).  A queue busy elsewhere or still running is skipped.
    """
    rt = runtime(ctx)
    # Each line of stdout says what happened; stderr gets warnings (a crontab mails them), or all
    # of the log when the config asks for DEBUG.
    setup_logging("DEBUG" if rt.config.log.level == "DEBUG" else "WARNING")
    specs = rt.registry.queues
    unknown = sorted(set(names) - set(specs.names()))
    if unknown:
        known = ", ".join(specs.names()) or "none"
        raise click.BadParameter(f"no queue {', '.join(unknown)} (known: {known})", param_hint="--queue")
    if force and not names:
        raise click.UsageError("--force needs --queue NAME: forcing every queue at once is rarely meant")
    failed = False
    with rt.queue_manager() as qm:
        dispatcher = make_dispatcher(rt.config, specs, qm)
        try:
            tick = dispatcher.due()
            now = time.time()
            for queue, run in tick.hung:
                click.echo(f"{queue} run {run.seq} hung: running for {now - run.started:.0f}s > {run.timeout:.0f}s")
            due = {spec.name for spec in tick.due}
            for spec in specs:
                if names and spec.name not in names:
                    continue
                if spec.name in due or force:
                    report = dispatcher.run_now(spec, forced=force)
                    failed = failed or report.status in ("failed", "lost")
                    click.echo(str(report))
                else:
                    click.echo(f"{spec.name} not due")
        finally:
            dispatcher.store.close()
    return os.EX_UNAVAILABLE if failed else 0
