"""The ``statusq`` command.  The parser is built here; each command lives in its own module."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from statusq.errors import StatusqError

#: Each command's module and function, imported only when that command runs (or help lists
#: it): importing them all made every command pay for the daemon's imports (the supervisor,
#: the worker, SQLAlchemy), about half of `statusq deadletters list`'s 0.7 s.
COMMANDS = {
    "daemon": "daemon:daemon",
    "enqueue": "enqueue:enqueue",
    "cancel": "cancel:cancel",
    "purge": "cancel:purge",
    "status": "status:status",
    "deadletters": "deadletters:deadletters",
    "control": "control:control",
    "pause": "pauses:pause",
    "resume": "pauses:resume",
    "queues": "queues:queues",
    "dispatch": "dispatch:dispatch",
    "snmp": "monitor:snmp_agent",
    "check": "monitor:check",
    "gmetric": "monitor:gmetric",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when asked for, from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: Any = getattr(importlib.import_module(f"statusq.cli.{module}"), attr)
        assert isinstance(command, click.Command)
        return command


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


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
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
