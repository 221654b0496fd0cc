"""Several items in hand per worker (``--concurrency``), the daemon as a subprocess, on SQLite,
PostgreSQL, ActiveMQ and RabbitMQ: N in hand with threads and async handlers, SIGKILL and SIGTERM
with 8 in hand, a thread stuck past its time limit, ``current_site()`` with sites interleaved.

Handlers hold until the test creates a gate file, so "8 in hand at once" is seen in the records
and the state file, never inferred from timings.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

HOLD_PLUGIN = '''
"""Handlers that hold until a gate file exists, recording start and end (with the site they see)."""
import asyncio, json, os, threading, time
from statusq import QueueHandler, current_site

LOG = os.environ["TEST_RECORD"]
GATE = LOG + ".gate"
WAIT = 60.0

def mark(item, event):
    line = json.dumps({"event": event, "n": item.payload["n"], "site": item.site,
                       "seen": current_site().name, "attempt": item.attempt, "pid": os.getpid(),
                       "transport": item.transport}) + "\\n"
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)

class Hold(QueueHandler):
    def handle(self, item):
        mark(item, "start")
        deadline = time.monotonic() + WAIT
        while not os.path.exists(GATE):
            if time.monotonic() > deadline:
                raise RuntimeError("the gate never opened")
            time.sleep(0.01)
        mark(item, "end")
        return True

class AsyncHold(QueueHandler):
    async def handle(self, item):
        mark(item, "start")
        deadline = time.monotonic() + WAIT
        while not os.path.exists(GATE):
            if time.monotonic() > deadline:
                raise RuntimeError("the gate never opened")
            await asyncio.sleep(0.01)
        mark(item, "end")
        return True

class Stuck(QueueHandler):
    def handle(self, item):
        mark(item, "start")
        threading.Event().wait(item.payload["seconds"])  # a wait in C: no exception reaches it
        mark(item, "end")
        return True

def register(api):
    api.register_handler("hold", Hold)
    api.register_handler("ahold", AsyncHold)
    api.register_handler("stuck", Stuck)
'''

SITES = ("a.example", "b.example")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"])
def config_for(
    request: pytest.FixtureRequest, write_config: Callable[..., Path], plugin_dir: Path, tmp_path: Path
) -> Callable[..., Path]:
    """Writes the config for this backend, with the hold plugin beside the counter."""
    (plugin_dir / "hold.py").write_text(HOLD_PLUGIN)
    backend = request.param

    def write(**sections: Any) -> Path:
        if backend in ("activemq", "rabbitmq"):
            broker = make_broker(backend)
            queue = {"subsystem": "stomp", **sections.pop("queue", {})}
            return write_config("sqlite:///unused.sqlite", stomp_toml(broker), queue=queue, **sections)
        url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
        return write_config(url, **sections)

    return write


def enqueue(config: Path, items: list[tuple[str, dict[str, Any], str]]) -> None:
    with statusq.connect(config) as qm:
        for transport, payload, site in items:
            qm.enqueue(payload, transport, site=site)


def eight_mixed(config: Path, first: int = 0, count: int = 8) -> list[int]:
    """Items n = first .. first+count-1, sync and async alternating, the two sites interleaved."""
    numbers = list(range(first, first + count))
    enqueue(config, [("hold" if n % 2 else "ahold", {"n": n}, SITES[n // 2 % 2]) for n in numbers])
    return numbers


def events(record_file: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in read_records(record_file) if r.get("event") == event]


def open_gate(record_file: Path) -> None:
    Path(f"{record_file}.gate").write_text("open")


def in_hand(config: Path) -> int:
    status = json.loads(run_cli("status", "--json", config=config).stdout)
    return sum((w["item"] is not None) + len(w["others"]) for daemon in status["daemons"] for w in daemon["processes"])


def test_eight_sync_and_async_items_in_hand_at_once_each_handled_once_with_its_own_site(
    config_for: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given 8 items, sync and async handlers alternating, two sites interleaved
    config = config_for()
    numbers = eight_mixed(config)

    # When one worker with 8 in hand takes them, and they all hold
    daemon = start_daemon(config, "--workers", "1", "--concurrency", "8", "--idle-exit", "1", log=tmp_path / "d.log")
    wait_for(lambda: len(events(record_file, "start")) == 8, what="8 items started together")

    # Then all 8 are in hand at once, and the state file says so
    wait_for(lambda: in_hand(config) == 8, what="the state file showing 8 in hand")
    open_gate(record_file)
    assert daemon.wait(timeout=60) == 0
    # And each was handled once, seeing its own site before and after the others interleaved
    ends = events(record_file, "end")
    assert sorted(r["n"] for r in ends) == numbers
    assert len(events(record_file, "start")) == 8
    assert all(r["seen"] == r["site"] for r in read_records(record_file))
    assert {r["transport"] for r in ends} == {"hold", "ahold"}


def test_a_worker_sigkilled_with_eight_in_hand_loses_none(
    config_for: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a worker holding 8 items
    config = config_for(queue={"max_retries": 3})
    numbers = eight_mixed(config)
    daemon = start_daemon(config, "--workers", "1", "--concurrency", "8", "--idle-exit", "2", log=tmp_path / "d.log")
    wait_for(lambda: len(events(record_file, "start")) == 8, what="8 items started together")
    [worker] = {r["pid"] for r in events(record_file, "start")}

    # When it is SIGKILLed, then the handlers are let through
    os.kill(worker, signal.SIGKILL)
    open_gate(record_file)

    # Then its replacement handles every one of the 8 (claims released, or broker redelivery)
    assert daemon.wait(timeout=90) == 0, (tmp_path / "d.log").read_text()[-3000:]
    ends = events(record_file, "end")
    assert sorted({r["n"] for r in ends}) == numbers
    assert all(r["pid"] != worker and r["attempt"] == 2 for r in ends)
    assert max(Counter(r["n"] for r in ends).values()) == 1


def test_sigterm_with_eight_in_hand_finishes_them_and_exits_0(
    config_for: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a worker holding 8 items, and 4 more waiting
    config = config_for()
    numbers = eight_mixed(config, count=12)
    log = tmp_path / "d.log"
    daemon = start_daemon(config, "--workers", "1", "--concurrency", "8", log=log)
    wait_for(lambda: len(events(record_file, "start")) == 8, what="8 items started together")

    # When the daemon gets SIGTERM, and only once it is draining are the handlers let through
    daemon.send_signal(signal.SIGTERM)
    wait_for(lambda: "finishing the items in hand first" in log.read_text(), what="the worker draining")
    open_gate(record_file)

    # Then it exits 0, having finished the 8 and started nothing else
    assert daemon.wait(timeout=60) == 0, log.read_text()[-3000:]
    first = sorted(r["n"] for r in events(record_file, "end"))
    assert len(first) == 8 and len(events(record_file, "start")) == 8
    # And the 4 left are there for the next daemon: each of the 12 handled exactly once
    assert run_cli("daemon", "--workers", "1", "--idle-exit", "1", config=config).returncode == 0
    ends = Counter(r["n"] for r in events(record_file, "end"))
    assert sorted(ends) == numbers and set(ends.values()) == {1}


def test_a_thread_stuck_past_its_time_limit_is_dealt_with_and_the_others_go_on(
    config_for: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a 1 s time limit, a handler stuck in C for 30 s, and ordinary items behind it
    config = config_for(queue={"max_retries": 1}, daemon={"time_limit": "1s", "time_limit_grace": "1s"})
    enqueue(config, [("stuck", {"n": 0, "seconds": 30}, "a.example")])
    enqueue(config, [("count", {"n": n}, "b.example") for n in range(1, 7)])

    # When a worker with 4 in hand runs until idle
    done = run_cli("daemon", "--workers", "1", "--concurrency", "4", "--idle-exit", "2", config=config, timeout=90)

    # Then the stuck item was settled as a time-limit failure (twice: max_retries 1), its thread
    # abandoned and the worker replaced, while every other item was handled once
    assert done.returncode == 0, done.stderr[-3000:]
    assert "did not stop" in done.stderr and "abandoned" in done.stderr
    assert sorted(r["n"] for r in read_records(record_file) if "event" not in r) == list(range(1, 7))
    assert [r["attempt"] for r in events(record_file, "start")] == [1, 2]
    assert events(record_file, "end") == []
    letters = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    [letter] = letters
    assert "did not stop" in letter["error"] and letter["attempts"] == 2
