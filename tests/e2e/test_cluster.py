"""The cluster view end to end: two daemons ("hosts": a var_dir each) on one shared store.

``statusq status --all`` lists both; a SIGKILLed one (supervisor and workers) shows as gone, and
on the database backend the item it held is released by the other daemon at once: the claim
timeout is ten minutes here, so nothing but the heartbeat can hand it over within the test.
On STOMP the broker redelivers by itself; the view still says who is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.state import RunDir, alive
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.e2e.test_supervisor import daemons, ready_workers
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

__all__ = ["daemons"]  # the fixture, imported for use here

BEAT = 0.5

HANG_ONCE_PLUGIN = '''
"""Hangs on its first attempt (the daemon holding it gets killed); any later one finishes."""
import json, os, time
from statusq import QueueHandler

class HangOnce(QueueHandler):
    def handle(self, item):
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (json.dumps({"attempt": item.attempt, "pid": os.getpid()}) + "\\n").encode())
        os.close(fd)
        if item.attempt == 1:
            time.sleep(60)
        return True

def register(api):
    api.register_handler("hang_once", HangOnce)
'''


def second_host(config: Path) -> Path:
    """The same config with a var_dir of its own: another host's daemon, as ``status`` sees it."""
    other = config.with_name("statusq-b.toml")
    other.write_text(config.read_text().replace('var_dir = "var"', 'var_dir = "var-b"', 1))
    return other


def cluster(config: Path) -> dict[int, dict[str, Any]]:
    """``status --all --json``'s cluster, by supervisor pid."""
    result = run_cli("status", "--all", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return {d["pid"]: d for d in json.loads(result.stdout)["cluster"]}


def kill_host(var_dir: Path, daemon: subprocess.Popen[str]) -> list[int]:
    """SIGKILL a supervisor, then its workers before they notice: nothing of it is left to
    release anything (the worker pids, read before the kill)."""
    pids = [w.pid for w in RunDir(var_dir, daemon.pid).workers()]
    daemon.send_signal(signal.SIGKILL)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    daemon.wait(timeout=30)
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, what="the killed host's workers gone")
    return pids


def test_two_hosts_on_the_db_backend_one_killed_its_item_runs_on_the_other(
    db_url: str, write_config: Callable[..., Path], plugin_dir: Path, record_file: Path, tmp_path: Path, daemons: list
) -> None:
    # Given host B's daemon hanging on the only item (claim timeout: 10 minutes), then host A's
    (plugin_dir / "hang_once.py").write_text(HANG_ONCE_PLUGIN)
    config_a = write_config(
        db_url,
        queue={"claim_timeout": "600s"},
        daemon={"beat": BEAT, "time_limit": "120s", "shutdown_timeout": "5s"},
    )
    config_b = second_host(config_a)
    b = start_daemon(config_b, "--workers", "1", log=tmp_path / "b.log")
    daemons.append(b)
    with statusq.connect(config_b) as qm:
        qm.enqueue({}, "hang_once")
    wait_for(lambda: len(read_records(record_file)) == 1, what="B holding the item")
    a = start_daemon(config_a, "--workers", "1", log=tmp_path / "a.log")
    daemons.append(a)
    wait_for(lambda: len(ready_workers(config_a, a)) == 1, what="A ready")

    # Then status --all lists both, alive, with their pids and B's item in hand
    wait_for(lambda: {a.pid, b.pid} <= set(cluster(config_a)), timeout=30, what="both daemons listed")
    seen = cluster(config_a)
    assert {seen[a.pid]["status"], seen[b.pid]["status"]} == {"alive"}
    wait_for(lambda: cluster(config_a)[b.pid]["in_hand"] == 1, timeout=30, what="B's item in hand, listed")
    assert seen[b.pid]["backend"] == seen[a.pid]["backend"] and seen[b.pid]["beat"] == BEAT
    text = run_cli("status", "--all", config=config_a).stdout
    assert "cluster" in text and f" {a.pid} " in text and f" {b.pid} " in text

    # When host B is SIGKILLed, supervisor and workers
    kill_host(tmp_path / "var-b", b)

    # Then B shows as gone, and A's worker runs the item again, released by A's heartbeat
    wait_for(lambda: cluster(config_a)[b.pid]["status"] == "gone", timeout=30, what="B gone")
    wait_for(lambda: len(read_records(record_file)) == 2, timeout=30, what="the item run again")
    first, again = read_records(record_file)
    a_workers = [w.pid for w in ready_workers(config_a, a)]
    assert (first["attempt"], again["attempt"]) == (1, 2) and again["pid"] in a_workers
    assert cluster(config_a)[b.pid]["released_at"] is not None
    assert f"pid {b.pid} gone (no heartbeat" in (tmp_path / "a.log").read_text()
    assert cluster(config_a)[a.pid]["status"] == "alive"

    # And a clean stop takes A off the list
    a.send_signal(signal.SIGTERM)
    assert a.wait(timeout=60) == 0
    assert a.pid not in cluster(config_a)


def test_two_hosts_on_activemq_one_killed_shows_as_gone(
    write_config: Callable[..., Path], record_file: Path, tmp_path: Path, daemons: list
) -> None:
    # Given two daemons on one broker, their heartbeats in one SQLite store at db_url
    broker = make_broker("activemq")
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    config_a = write_config(store, stomp_toml(broker), queue={"subsystem": "stomp"}, daemon={"beat": BEAT})
    config_b = second_host(config_a)
    a = start_daemon(config_a, "--workers", "1", log=tmp_path / "a.log")
    b = start_daemon(config_b, "--workers", "1", log=tmp_path / "b.log")
    daemons.extend([a, b])

    # Then status --all lists both with their pids, on the broker
    wait_for(lambda: {a.pid, b.pid} <= set(cluster(config_a)), timeout=60, what="both daemons listed")
    seen = cluster(config_a)
    assert seen[b.pid]["backend"].startswith("stomp 127.0.0.1:61613")
    assert seen[b.pid]["owners"] == []  # nothing to release: the broker redelivers

    # When B is SIGKILLed, it shows as gone; A stays alive
    kill_host(tmp_path / "var-b", b)
    wait_for(lambda: cluster(config_a)[b.pid]["status"] == "gone", timeout=30, what="B gone")
    assert cluster(config_a)[a.pid]["status"] == "alive"
    assert cluster(config_a)[b.pid]["released_at"] is None
