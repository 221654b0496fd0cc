"""Every command's help ends with examples and names the docs page that explains it (issue 19)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from statusq.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
_SEE = re.compile(r"See (docs/[\w/.-]+\.md)\b")


def _commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path)
        for name in command.list_commands(ctx):  # the lazy root group imports each here
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{path} lists {name} but has no such command"
            yield from _commands(sub, f"{path} {name}")


COMMANDS = list(_commands(cli, "statusq"))


def test_every_command_is_listed() -> None:
    top = {path.split()[1] for path, _ in COMMANDS if len(path.split()) == 2}
    assert {"daemon", "enqueue", "status", "deadletters", "control", "pause", "snmp", "check"} <= top


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_help_ends_with_examples_and_the_page_that_explains_them(path: str, command: click.Command) -> None:
    epilog = command.epilog or ""
    assert "Examples" in epilog, f"{path}: no examples in its help"
    last = epilog.strip().splitlines()[-1]
    page = _SEE.search(last)
    assert page, f"{path}: its help does not end with 'See docs/PAGE.md': {last!r}"
    assert (ROOT / page.group(1)).is_file(), f"{path}: {page.group(1)} does not exist"


def test_the_help_shows_the_page() -> None:
    with click.Context(cli, info_name="statusq") as ctx:
        sub = cli.get_command(ctx, "enqueue")
        assert sub is not None
        text = sub.get_help(click.Context(sub, info_name="enqueue", parent=ctx))
    assert text.rstrip().endswith("See docs/enqueueing.md (make docs builds it into site/).")
