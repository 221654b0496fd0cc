"""Cancel and purge end to end, on SQLite, PostgreSQL, ActiveMQ and RabbitMQ, with the CLI as an
operator runs it: what the database holds is deleted; what a broker holds (it cannot delete
one message) is remembered in ``db_url`` and dropped unrun when it arrives."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from tests.conftest import run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config(
    backend: str, request: pytest.FixtureRequest, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> Path:
    if backend in ("activemq", "rabbitmq"):
        db = f"sqlite:///{tmp_path / 'state.sqlite'}"  # the remembered cancellations
        return write_config(db, stomp_toml(make_broker(backend)), queue={"subsystem": "stomp"})
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url)


def runs(record_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.exists() else []


def test_cancelled_and_purged_items_never_run_and_later_ones_do(
    backend: str, config: Path, record_file: Path, tmp_path: Path
) -> None:
    site = f"{uuid.uuid4().hex[:12]}.example"  # a site of this test's own: a purge is by site
    with statusq.connect(config) as qm:
        # Given a backlog: two items to cancel, three of a site to purge, and two to keep
        cancelled = [qm.enqueue({"n": n}, "count", site="keep.example") for n in (1, 2)]
        kept = qm.enqueue({"n": 3}, "count", site="keep.example")
        for n in (4, 5, 6):
            qm.enqueue({"n": n}, "count", site=site)
        other_transport = qm.enqueue({"n": 7}, "other", site=site)
    # When an operator cancels and purges (no daemon running)
    result = run_cli("cancel", "--reason", "sent twice", *cancelled, config=config)
    assert result.returncode == 0, result.stderr
    purge = run_cli("purge", "--site", site, "--transport", "count", "--reason", "site moved", config=config)
    assert purge.returncode == 0, purge.stderr
    if backend in ("activemq", "rabbitmq"):  # a broker cannot delete: remembered, counts honest
        assert "cancelled 0 queued item(s); 2 to be dropped when they arrive" in result.stdout
        assert "purged an unknown number of queued item(s)" in purge.stdout
    else:
        assert "cancelled 2 queued item(s); 0 to be dropped when they arrive" in result.stdout
        assert "purged 3 queued item(s)" in purge.stdout
    time.sleep(0.05)  # an item enqueued after the purge is newer than it on every clock
    with statusq.connect(config) as qm:
        after = qm.enqueue({"n": 8}, "count", site=site)
    # And a daemon runs what is left
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: {3, 8} <= {r["n"] for r in runs(record_file)}, what="the kept items")
        if backend in ("activemq", "rabbitmq"):
            log = tmp_path / "daemon.log"
            wait_for(lambda: log.read_text().count("not run: ") >= 5, what="five items dropped on arrival")
        time.sleep(1.0)  # room for a wrong run to show
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0
    # Then only the kept ones ran
    assert sorted(r["n"] for r in runs(record_file)) == [3, 8]
    assert {r["id"] for r in runs(record_file)} == {kept, after}
    assert other_transport not in {r["id"] for r in runs(record_file)}  # no handler: dead-lettered, not purged
