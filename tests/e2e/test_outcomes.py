"""Handler-chosen outcomes and per-transport settings end to end: ``statusq daemon`` as a
subprocess on SQLite, PostgreSQL, ActiveMQ and RabbitMQ."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from tests.conftest import RECORDER, read_records, run_cli
from tests.stomp import Broker, drain, make_broker, stomp_toml

pytestmark = pytest.mark.e2e

CHOOSY = (
    '''
"""Raises statusq.Reject or statusq.Retry as its payload says; records each attempt and when."""
import json, os, time
from statusq import QueueHandler, Reject, Retry

'''
    + RECORDER
    + """
class Choosy(QueueHandler):
    def handle(self, item):
        p = item.payload
        record(n=p["n"], attempt=item.attempt, at=time.time())
        if "reject" in p:
            raise Reject(p["reject"])
        if item.attempt <= p.get("retries", 0):
            raise Retry(delay=p["delay"], reason="busy " + str(p["n"]))
        return True

class Patient(QueueHandler):
    def handle(self, item):
        record(n=item.payload["n"], attempt=item.attempt, at=time.time())
        time.sleep(item.payload["seconds"])
        record(n=item.payload["n"], attempt=item.attempt, at=time.time(), finished=True)
        return True

def register(api):
    # [transports.choosy] in the tests' config overrides max_retries
    api.register_handler("choosy", Choosy, max_retries=5, retry_delay="20ms", retry_delay_max="50ms")
    api.register_handler("patient", Patient, time_limit="4s")
"""
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def setup(
    backend: str, request: pytest.FixtureRequest, write_config: Callable[..., Path], plugin_dir: Path, tmp_path: Path
) -> tuple[Path, Broker | None]:
    """A config for ``backend`` with the choosy plugin, whose max_retries (5 when registered,
    2 in [queue]) the config sets to 1 for its transport."""
    (plugin_dir / "choosy.py").write_text(CHOOSY)
    extra = "[transports.choosy]\nmax_retries = 1\n"
    if backend in ("activemq", "rabbitmq"):
        broker = make_broker(backend)
        return write_config("sqlite:///unused.sqlite", stomp_toml(broker) + extra, queue={"subsystem": "stomp"}), broker
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url, extra), None


def dead_letters(config: Path) -> list[dict[str, Any]]:
    result = run_cli("deadletters", "list", "--json", config=config)
    assert result.returncode == 0, result.stderr
    letters: list[dict[str, Any]] = json.loads(result.stdout)
    return letters


def attempts(record_file: Path, n: int) -> list[dict[str, Any]]:
    return [r for r in read_records(record_file) if r["n"] == n]


def test_reject_is_dead_lettered_with_its_reason_after_one_attempt(
    setup: tuple[Path, Broker | None], record_file: Path
) -> None:
    # Given an item its handler rejects, and one it handles
    config, broker = setup
    with statusq.connect(config) as qm:
        rejected = qm.enqueue({"n": 1, "reject": "no such account"}, "choosy", site="s.example")
        qm.enqueue({"n": 2}, "choosy", site="s.example")

    # When the daemon runs until idle
    done = run_cli("daemon", "--workers", "1", "--idle-exit", "2", config=config)

    # Then the rejected item ran once and is a dead letter with the reason; the other was handled
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["attempt"] for r in attempts(record_file, 1)] == [1]
    assert [r["attempt"] for r in attempts(record_file, 2)] == [1]
    [letter] = dead_letters(config)
    assert (letter["id"], letter["attempts"], letter["error"]) == (rejected, 1, "rejected: no such account")
    if broker is not None:  # on a broker, the reason travels in the dead letter's headers
        [(headers, _body)] = drain(broker.port, broker.physical(broker.basename + "dlq"))
        assert (headers["statusq-error"], headers["statusq-attempts"]) == ("rejected: no such account", "1")


def test_retry_waits_its_own_delay_and_transport_settings_end_retries(
    setup: tuple[Path, Broker | None], record_file: Path
) -> None:
    # Given an item whose handler asks once for a retry in 3 s (the transport's own backoff is
    # 20-50 ms), and one that always asks for a retry (0.2 s), under [transports.choosy]
    # max_retries = 1 (registered: 5; [queue]: 2)
    config, _broker = setup
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "retries": 1, "delay": "3s"}, "choosy")
        forever = qm.enqueue({"n": 2, "retries": 99, "delay": 0.2}, "choosy")

    # When the daemon runs until idle
    done = run_cli("daemon", "--workers", "1", "--idle-exit", "6", config=config)

    # Then the first came back only after its delay (held by the database or the broker), once
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = attempts(record_file, 1)
    assert (first["attempt"], second["attempt"]) == (1, 2)
    assert second["at"] - first["at"] >= 3.0
    # And the other was dead after the config's 2 attempts, not the plugin's 6 nor [queue]'s 3
    assert [r["attempt"] for r in attempts(record_file, 2)] == [1, 2]
    [letter] = dead_letters(config)
    assert (letter["id"], letter["attempts"], letter["error"]) == (forever, 2, "busy 2 (gave up after 2 attempts)")


def test_each_transport_has_its_own_time_limit(
    db_url: str, write_config: Callable[..., Path], plugin_dir: Path, record_file: Path
) -> None:
    # Given [daemon] time_limit 1s (+ 0.5s grace before the supervisor's SIGKILL); "patient"
    # registered with time_limit="4s"; [transports.count] time_limit = "0.3s"
    (plugin_dir / "choosy.py").write_text(CHOOSY)
    config = write_config(
        db_url, '[transports.count]\ntime_limit = "0.3s"\n', daemon={"time_limit": "1s", "time_limit_grace": "0.5s"}
    )
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "seconds": 2}, "patient")
        stopped = qm.enqueue({"n": 2, "action": "sleep", "seconds": 30}, "count")

    # When the daemon runs until idle
    done = run_cli("daemon", "--workers", "1", "--idle-exit", "2", config=config)

    # Then the patient item ran its 2 s past the global limit, once, and finished: neither
    # SIGALRM nor the supervisor's hard kill (which reads the item's own limit) stopped it
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(r["attempt"], r.get("finished", False)) for r in attempts(record_file, 1)] == [(1, False), (1, True)]
    assert "past time_limit" not in done.stderr
    # And the count item was stopped at its transport's 0.3 s, each of its 3 attempts
    assert [r["attempt"] for r in attempts(record_file, 2)] == [1, 2, 3]
    [letter] = dead_letters(config)
    assert letter["id"] == stopped and "time limit of 0.3s" in letter["error"]


def test_a_typo_in_a_transport_table_stops_the_daemon_naming_file_and_key(
    write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given [transports.cuont] (meant: count); the config loads, as no plugin is loaded then
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", "[transports.cuont]\nmax_retries = 0\n")
    assert run_cli("status", config=config).returncode == 0

    # When the daemon starts, its workers load the plugins and refuse it: exit 78, named
    done = run_cli("daemon", "--workers", "1", "--idle-exit", "1", config=config)

    assert done.returncode == 78, done.stderr[-3000:]
    expected = f"{config.resolve()}: transports.cuont: unknown transport 'cuont': no plugin registers it"
    assert expected in done.stderr
