"""Pause and resume end to end (issue #17), on SQLite, PostgreSQL, ActiveMQ and RabbitMQ, the
daemon a subprocess: a paused site's items are held (not run, not dead-lettered, attempts not
counted) across a restart of the daemon, and run once each after ``statusq resume``.

Retries are off (``max_retries = 0``): an attempt wrongly counted by a hold would make the next
delivery an attempt past the last, which the processor dead-letters; so "no dead letter and
attempt 1" proves the holds were not counted.  Waits poll; no wall time is asserted.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.metrics.scrape import Samples
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import Broker, make_broker, stomp_toml

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"]
HELD, OTHER = "held.example", "other.example"
#: Quick re-reads and short holds, so a held item comes back many times during the test.
FLOW = {"max_retries": 0, "pause_recheck": "200ms", "pause_hold": "300ms"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(backend: str) -> Broker | None:
    return make_broker(backend) if backend in ("activemq", "rabbitmq") else None


@pytest.fixture
def config(
    backend: str,
    broker: Broker | None,
    request: pytest.FixtureRequest,
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> Path:
    if broker is not None:
        # The pause table lives at db_url whatever the backend (here a SQLite file of the test's).
        return write_config(
            f"sqlite:///{tmp_path / 'shared.sqlite'}", stomp_toml(broker), queue={"subsystem": "stomp", **FLOW}
        )
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url, queue=FLOW)


@pytest.fixture
def daemon(config: Path, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        started.append(start_daemon(config, "--workers", "1", log=tmp_path / f"daemon-{len(started)}.log"))
        return started[-1]

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ran(record_file: Path, site: str) -> list[dict[str, Any]]:
    return [r for r in read_records(record_file) if r["site"] == site]


def cli_ok(config: Path, *args: str) -> str:
    result = run_cli(*args, config=config)
    assert result.returncode == 0, result.stderr
    return result.stdout


def stays_unrun(record_file: Path, seconds: float) -> None:
    """Polls for ``seconds``: not one of the paused site's items may run meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert ran(record_file, HELD) == [], "a paused site's item ran"
        time.sleep(0.1)


def test_a_paused_site_is_held_across_a_restart_and_runs_once_after_resume(config, daemon, record_file) -> None:
    # Given a paused site, and a daemon
    out = cli_ok(config, "pause", "--site", HELD, "--reason", "migrating")
    assert HELD in out
    first = daemon()

    # When items of the paused site and of another site are enqueued
    with statusq.connect(config) as qm:
        held = [qm.enqueue({"n": n}, "count", site=HELD) for n in range(5)]
        qm.enqueue({"n": 100}, "count", site=OTHER)

    # Then the other site's item runs, the paused site's do not (held again and again meanwhile)
    wait_for(lambda: len(ran(record_file, OTHER)) == 1, timeout=90, what="the other site's item")
    stays_unrun(record_file, 3.0)
    status = json.loads(cli_ok(config, "status", "--json"))
    assert [(p["kind"], p["name"], p["reason"]) for p in status["pauses"]] == [("site", HELD, "migrating")]

    # When the daemon is restarted: the pause is the store's, not the daemon's
    first.terminate()
    assert first.wait(timeout=60) == 0
    daemon()
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 101}, "count", site=OTHER)
    wait_for(lambda: len(ran(record_file, OTHER)) == 2, timeout=90, what="the restarted daemon to run an item")
    stays_unrun(record_file, 2.0)

    # When the site is resumed
    assert "resumed" in cli_ok(config, "resume", "--site", HELD)

    # Then each held item runs exactly once, as its first attempt, and nothing was dead-lettered
    wait_for(lambda: len(ran(record_file, HELD)) >= 5, timeout=90, what="the held items to run")
    time.sleep(1.0)  # a duplicate would come within a hold or two
    done = ran(record_file, HELD)
    assert sorted(r["id"] for r in done) == sorted(held)
    assert {r["attempt"] for r in done} == {1}
    assert json.loads(cli_ok(config, "deadletters", "list", "--json")) == []
    assert json.loads(cli_ok(config, "status", "--json"))["pauses"] == []


def test_a_paused_transport_is_held_and_the_python_api_pauses_and_resumes(config, daemon, record_file) -> None:
    # Given a transport paused through the Python API
    with statusq.connect(config) as qm:
        pause = qm.pause(transport="count", reason="remote down")
        assert (pause.kind, pause.name) == ("transport", "count")
        ids = [qm.enqueue({"n": n}, "count", site=site) for n, site in enumerate([HELD, OTHER])]
    daemon()

    # Then no item of it runs, on any site
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        assert read_records(record_file) == []
        time.sleep(0.1)

    # When it is resumed, each runs once
    with statusq.connect(config) as qm:
        assert [p.name for p in qm.pauses()] == ["count"]
        assert qm.resume(transport="count") is True
        assert qm.resume(transport="count") is False
    wait_for(lambda: len(read_records(record_file)) >= 2, timeout=90, what="the held items to run")
    assert sorted(r["id"] for r in read_records(record_file)) == sorted(ids)
    assert {r["attempt"] for r in read_records(record_file)} == {1}


def test_pauses_show_in_metrics_and_status(db_url, write_config, record_file, tmp_path) -> None:
    # Given a daemon serving /metrics, and a site and a transport paused
    port = free_port()
    metrics = {"enabled": True, "listen": f"127.0.0.1:{port}", "backlog_ttl": "0s"}
    config = write_config(db_url, queue=FLOW, metrics=metrics)
    cli_ok(config, "pause", "--site", HELD)
    cli_ok(config, "pause", "--transport", "count", "--reason", "remote down")
    start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")

    def paused() -> set[tuple[str, str, float]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                text = reply.read().decode()
        except OSError:
            return set()
        found = Samples.parse(text).select("statusq_paused")
        return {(s.labels["site"], s.labels["transport"], s.value) for s in found}

    # Then each pause is a series of /metrics, and a line of `statusq status` and `statusq pause`
    wait_for(lambda: paused() == {(HELD, "", 1.0), ("", "count", 1.0)}, timeout=60, what="statusq_paused")
    text = cli_ok(config, "status")
    assert HELD in text and "remote down" in text
    assert "transport  count" in cli_ok(config, "pause")

    # When one is resumed, its series is gone
    cli_ok(config, "resume", "--transport", "count")
    wait_for(lambda: paused() == {(HELD, "", 1.0)}, timeout=60, what="the resumed pause's series to go")


@pytest.mark.parametrize("flavor", ["activemq", "rabbitmq"])
def test_on_stomp_a_pause_reaches_workers_by_control_message(flavor, write_config, record_file, tmp_path) -> None:
    # Given a daemon whose workers would re-read the pauses only hourly, so only the control
    # message `statusq pause` sends can make them see one now
    broker = make_broker(flavor)
    queue = {"subsystem": "stomp", **FLOW, "pause_recheck": "1h"}
    config = write_config(f"sqlite:///{tmp_path / 'shared.sqlite'}", stomp_toml(broker), queue=queue)
    start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 0}, "count", site=HELD)
    wait_for(lambda: len(ran(record_file, HELD)) == 1, timeout=90, what="the first item (pauses read: none)")

    # When the site is paused, then an item of it enqueued
    cli_ok(config, "pause", "--site", HELD)
    with statusq.connect(config) as qm:
        later = qm.enqueue({"n": 1}, "count", site=HELD)
        qm.enqueue({"n": 2}, "count", site=OTHER)

    # Then it is held, while the other site's runs; and runs once resumed
    wait_for(lambda: len(ran(record_file, OTHER)) == 1, timeout=90, what="the other site's item")
    stays_unrun_after(record_file, 1, 2.0)
    cli_ok(config, "resume", "--site", HELD)
    wait_for(lambda: len(ran(record_file, HELD)) == 2, timeout=90, what="the held item after resume")
    assert ran(record_file, HELD)[1]["id"] == later and ran(record_file, HELD)[1]["attempt"] == 1


def stays_unrun_after(record_file: Path, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert len(ran(record_file, HELD)) == count, "a paused site's item ran"
        time.sleep(0.1)
