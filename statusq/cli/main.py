"""The ``statusq`` command.  The parser is built here; each command lives in its own module."""

from __future__ import annotations

import os
import sys

import click

from statusq.cli import cancel, control, daemon, deadletters, dispatch, enqueue, monitor, pauses, queues, status
from statusq.errors import StatusqError

EPILOG = """\b
Examples:
  statusq --config conf/statusq.toml daemon
  statusq enqueue --site example.org demo '{"text": "hello"}'
  echo '{"text": "hi"}' | statusq enqueue --site example.org demo -
  statusq status --json
  statusq deadletters list
  statusq deadletters retry --all
  statusq control update-site example.org
  statusq pause --site example.org --reason "migration"
\b
See docs/cli.md (make docs builds it into site/).
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Config file (default: $STATUSQ_CONFIG, then /etc/statusq/statusq.toml).",
)
@click.version_option(package_name="statusq")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """statusq: run an application's background work off a message broker or database."""
    ctx.ensure_object(dict)["config_path"] = config_path


cli.add_command(daemon.daemon)
cli.add_command(enqueue.enqueue)
cli.add_command(cancel.cancel)
cli.add_command(cancel.purge)
cli.add_command(status.status)
cli.add_command(deadletters.deadletters)
cli.add_command(control.control)
cli.add_command(pauses.pause)
cli.add_command(pauses.resume)
cli.add_command(queues.queues)
cli.add_command(dispatch.dispatch)
cli.add_command(monitor.snmp_agent, name="snmp")
cli.add_command(monitor.check)
cli.add_command(monitor.gmetric)


def main(argv: list[str] | None = None) -> int:
    """Entry point with named exit codes: 64 usage, 65 bad data, 78 bad config, 69 backend down."""
    try:
        result = cli.main(args=argv, prog_name="statusq", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as exc:
        exc.show()
        return os.EX_USAGE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except StatusqError as exc:
        click.echo(f"statusq: {exc}", err=True)
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
