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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.queues.db.daemons import DaemonRow, read_cluster
from statusq.state import RunDir, alive
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.e2e.test_supervisor import daemons
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


def stored(db_url: str) -> dict[int, DaemonRow]:
    """The heartbeat rows by supervisor pid, read in-process (a CLI call costs a second)."""
    return {row.pid: row for row in read_cluster(db_url)}


EMPTY = DaemonRow("", "", 0, "", 0, 0, 0, "", "", "", 0.0, 0.0, 1.0)


def workers_of(var_dir: Path, daemon: subprocess.Popen[str]) -> list[int]:
    """The pids of a daemon's ready workers, from the state files under its var_dir."""
    states = RunDir(var_dir, daemon.pid).workers()
    return [w.pid for w in states if alive(w.pid) and w.state in ("idle", "busy")]


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
    # Given two hosts' daemons on one store (claim timeout: 10 minutes), one hanging on the item
    (plugin_dir / "hang_once.py").write_text(HANG_ONCE_PLUGIN)
    config_a = write_config(
        db_url,
        queue={"claim_timeout": "600s"},
        daemon={"beat": BEAT, "time_limit": "120s", "shutdown_timeout": "5s"},
    )
    hosts = {config_a: tmp_path / "var", second_host(config_a): tmp_path / "var-b"}
    started = {start_daemon(c, "--workers", "1", log=tmp_path / f"{v.name}.log"): v for c, v in hosts.items()}
    daemons.extend(started)
    wait_for(lambda: all(workers_of(v, d) for d, v in started.items()), what="a worker ready in each")
    with statusq.connect(config_a) as qm:
        qm.enqueue({}, "hang_once")
    wait_for(lambda: len(read_records(record_file)) == 1, what="the item in hand")
    holder = next(d for d, c in started.items() if read_records(record_file)[0]["pid"] in workers_of(c, d))
    other = next(d for d in started if d is not holder)
    wait_for(lambda: stored(db_url).get(holder.pid, EMPTY).in_hand == 1, timeout=30, what="its item listed")

    # Then status --all lists both, alive, with their pids and the item in hand
    seen = cluster(config_a)
    assert {seen[holder.pid]["status"], seen[other.pid]["status"]} == {"alive"}
    assert seen[holder.pid]["in_hand"] == 1 and seen[holder.pid]["beat"] == BEAT
    assert seen[holder.pid]["backend"] == seen[other.pid]["backend"]
    text = run_cli("status", "--all", config=config_a).stdout
    assert "cluster" in text and f" {holder.pid} " in text and f" {other.pid} " in text

    # When the holder's host is SIGKILLed, supervisor and workers
    kill_host(started[holder], holder)

    # Then it shows as gone, and the other daemon runs the item again, released by its heartbeat
    wait_for(lambda: stored(db_url)[holder.pid].gone(time.time()), timeout=30, what="the holder gone")
    wait_for(lambda: len(read_records(record_file)) == 2, timeout=30, what="the item run again")
    first, again = read_records(record_file)
    assert (first["attempt"], again["attempt"]) == (1, 2) and again["pid"] in workers_of(started[other], other)
    seen = cluster(config_a)
    assert seen[holder.pid]["status"] == "gone" and seen[holder.pid]["released_at"] is not None
    assert seen[other.pid]["status"] == "alive"
    assert f"pid {holder.pid} gone (no heartbeat" in (tmp_path / f"{started[other].name}.log").read_text()

    # And a clean stop takes the other off the list
    other.send_signal(signal.SIGTERM)
    assert other.wait(timeout=60) == 0
    assert other.pid not in stored(db_url)


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
    wait_for(lambda: {a.pid, b.pid} <= set(stored(store)), timeout=60, what="both daemons listed")
    seen = cluster(config_a)
    assert seen[b.pid]["backend"].startswith("stomp 127.0.0.1:61613")
    assert seen[b.pid]["owners"] == []  # nothing to release: the broker redelivers

    # When B is SIGKILLed, it shows as gone; A stays alive
    kill_host(tmp_path / "var-b", b)
    wait_for(lambda: stored(store)[b.pid].gone(time.time()), timeout=30, what="B gone")
    seen = cluster(config_a)
    assert (seen[a.pid]["status"], seen[b.pid]["status"]) == ("alive", "gone")
    assert seen[b.pid]["released_at"] is None
