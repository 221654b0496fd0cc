"""Every code block of the README and the docs pages runs, or says why it cannot (issue 19).

A page's blocks run in order in a scratch home (tests/docs/runner.py says how each language is
run); a block that needs a server skips (or fails under CI) when the server is not there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, pages, parse, problems
from tests.docs.runner import PageRun
from tests.servers import require

SERVERS = {
    "activemq": ("127.0.0.1", 61613, "ActiveMQ STOMP"),
    "rabbitmq": ("127.0.0.1", 61614, "RabbitMQ STOMP"),
    "postgres": ("127.0.0.1", 5432, "PostgreSQL"),
    "prosody": ("127.0.0.1", 5222, "Prosody"),
}
#: The pages with at least one block to run.
PAGES = [str(p.relative_to(ROOT)) for p in pages() if any(b.not_run is None for b in parse(p))]


def test_every_block_is_run_or_says_why_not() -> None:
    found = [problem for page in pages() for problem in problems(parse(page))]
    assert not found, "\n".join(found)


def test_the_pages_have_blocks_to_run() -> None:
    # Given every page, when counting what the runner executes, then most blocks run: a runner
    # that silently skipped everything would pass the test above.
    blocks = [block for page in pages() for block in parse(page)]
    run = [block for block in blocks if block.not_run is None]
    assert len(run) >= 30, [block.where for block in run]
    assert {block.language for block in run} >= {"python", "toml", "sh", "yaml"}


@pytest.mark.e2e  # shell blocks run the statusq CLI and daemon as subprocesses
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [block for block in parse(ROOT / page) if block.not_run is None]
    for needs in {block.directives["needs"] for block in blocks if "needs" in block.directives}:
        require(*SERVERS[needs])
    home = tmp_path / "home"
    home.mkdir()
    run = PageRun(home)
    for name in ("HOME", "STATUSQ_CONFIG"):
        monkeypatch.setenv(name, run.env[name])
    monkeypatch.chdir(home)
    for block in blocks:
        run.run(block)
