"""``statusq daemon``'s supervisor end to end: workers killed, leaking, stuck, reloaded, orphaned.

Every test runs the real CLI as a subprocess against SQLite and, where the queue's behaviour
matters, PostgreSQL.  Waits are bounded; no assertion is about how long something took.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.state import RunDir, WorkerState, alive
from tests.conftest import read_records, run_cli, start_daemon, wait_for

pytestmark = pytest.mark.e2e

STUCK_PLUGIN = '''
"""A handler stuck where SIGALRM cannot reach: C's system() keeps waiting through signals."""
import json, os
from statusq import QueueHandler

class Stuck(QueueHandler):
    def handle(self, item):
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (json.dumps({"n": "stuck", "attempt": item.attempt, "pid": os.getpid()}) + "\\n").encode())
        os.close(fd)
        os.system("sleep 30 >/dev/null 2>&1")
        return True

def register(api):
    api.register_handler("stuck", Stuck)
'''


# -- helpers ----------------------------------------------------------------------------------------


def workers(config: Path, daemon: subprocess.Popen[str]) -> list[WorkerState]:
    """The live workers of a running daemon, from the state files it keeps under var_dir/run."""
    return [w for w in RunDir(config.parent / "var", daemon.pid).workers() if alive(w.pid)]


def ready_workers(config: Path, daemon: subprocess.Popen[str]) -> list[WorkerState]:
    return [w for w in workers(config, daemon) if w.state in ("idle", "busy")]


def status_json(config: Path) -> dict[str, Any]:
    result = run_cli("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def backlog(config: Path) -> dict[str, int]:
    totals: dict[str, int] = status_json(config)["totals"]
    return totals


def queue_empty(config: Path) -> bool:
    with statusq.connect(config) as qm:
        rows = qm.backlog()
    return sum(r.ready + r.delayed + r.in_flight for r in rows) == 0


def enqueue_many(db_url: str, payloads: list[dict[str, Any]]) -> None:
    """Items straight into the queue table in one transaction: as many enqueue() calls, a commit
    each, take half a minute on PostgreSQL."""
    from sqlalchemy import insert

    from statusq.queues.db.engine import make_engine
    from statusq.queues.db.schema import items, metadata

    engine = make_engine(db_url)
    metadata.create_all(engine)
    now = time.time()
    row = {"site": "default", "transport": "count", "priority": 4, "content_type": "application/json"}
    rows = [
        {**row, "body": json.dumps(p).encode(), "headers": "{}", "attempts": 0, "enqueued_at": now, "available_at": now}
        for p in payloads
    ]
    with engine.begin() as conn:
        conn.execute(insert(items), rows)
    engine.dispose()


def stop(daemon: subprocess.Popen[str]) -> int:
    """SIGTERM and the exit code (bounded)."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    return daemon.wait(timeout=60)


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[str]]]:
    """Daemons a test starts; any still running at the end (a failed test) are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for daemon in started:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)


class Producer(threading.Thread):
    """Enqueues numbered items at a steady pace until stopped: the stream a daemon works on."""

    def __init__(self, config: Path, payload: Callable[[int], dict[str, Any]], site: str = "s.example") -> None:
        super().__init__(daemon=True)
        self.config, self.payload, self.site = config, payload, site
        self.sent: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with statusq.connect(self.config) as qm:
            while not self._halt.is_set():
                n = len(self.sent)
                qm.enqueue(self.payload(n), "count", site=self.site)
                self.sent.append(n)
                time.sleep(0.005)

    def stop(self) -> list[int]:
        self._halt.set()
        self.join(timeout=30)
        return self.sent


def handled_once_each(record_file: Path, expected: list[int]) -> Counter[int]:
    counts = Counter(r["n"] for r in read_records(record_file))
    assert sorted(counts) == sorted(expected), "an item was lost"
    return counts


# -- Done when (1): SIGKILLed workers lose nothing ----------------------------------------------------

ITEM_SECONDS = 0.002
ACK_FLUSH = 0.02


def test_workers_sigkilled_every_half_second_lose_no_item(db_url, write_config, record_file, tmp_path, daemons) -> None:
    # Given 5,000 short items, and a claim_timeout far longer than the test, so that only the
    # supervisor's release can bring back what a killed worker held
    config = write_config(
        db_url,
        queue={"claim_timeout": "1h", "max_retries": 20, "ack_flush": f"{ACK_FLUSH}s"},
        daemon={"spawn_delay": "50ms", "storm_attempts": 10000},
    )
    # 2 ms of work per item: a kill then lands mid-item (holding a claim) rather than between
    # items, and the queue lasts long enough for about ten kills.
    enqueue_many(db_url, [{"n": n, "action": "sleep", "seconds": ITEM_SECONDS} for n in range(5000)])
    daemon = start_daemon(config, "--workers", "2", log=tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: len(ready_workers(config, daemon)) == 2, what="two workers ready")

    # When one worker is SIGKILLed about every half second until the queue is empty
    kills = 0
    deadline = time.monotonic() + 240
    while not queue_empty(config):
        assert time.monotonic() < deadline, "the queue never emptied"
        busy = [w for w in ready_workers(config, daemon) if w.state == "busy"]
        if busy:
            os.kill(busy[kills % len(busy)].pid, signal.SIGKILL)
            kills += 1
        time.sleep(0.5)

    # Then every item was handled, none dead, and a kill ran again at most the item in hand and
    # what finished in the last ack_flush window (acks are written on that clock: docs/db.md,
    # "A worker killed mid-batch"), at 2 ms an item: 1 + 20 ms / 2 ms, plus one at the edge.
    restarts = status_json(config)["daemons"][0]["restarts"]
    assert stop(daemon) == 0
    counts = handled_once_each(record_file, list(range(5000)))
    duplicates = sum(count - 1 for count in counts.values())
    per_kill = 2 + round(ACK_FLUSH / ITEM_SECONDS)
    assert kills >= 3 and duplicates <= kills * per_kill, (duplicates, kills)
    assert restarts["crash"] >= 1
    assert backlog(config) == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    log = (tmp_path / "daemon.log").read_text()
    assert "released, the attempt counted" in log


# -- Done when (2): memory recycling --------------------------------------------------------------------


def test_leaking_workers_are_recycled_and_each_item_is_handled_once(
    db_url, write_config, record_file, tmp_path, daemons
) -> None:
    # Given a handler that keeps 1 MB per item, and a 100 MB soft limit (a fresh worker is ~50 MB)
    config = write_config(db_url, daemon={"soft_memory_limit": "100MB"})
    with statusq.connect(config) as qm:
        for n in range(300):
            qm.enqueue({"n": n, "action": "leak", "mb": 1}, "count")

    # When two workers work through them
    daemon = start_daemon(config, "--workers", "2", log=tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: len(read_records(record_file)) == 300 and queue_empty(config), timeout=180, what="all handled")

    # Then workers were replaced, each item was handled exactly once, and status shows the restarts
    status = status_json(config)
    table = run_cli("status", config=config).stdout
    assert stop(daemon) == 0
    counts = handled_once_each(record_file, list(range(300)))
    assert set(counts.values()) == {1}
    memory = status["daemons"][0]["restarts"]["memory"]
    assert memory >= 2 and status["daemons"][0]["restarts"]["crash"] == 0
    assert f"memory {memory}" in table
    assert len({r["pid"] for r in read_records(record_file)}) >= 3


def test_a_fresh_worker_over_the_memory_limit_is_not_respawned(write_config, record_file, tmp_path) -> None:
    # Given a soft limit no fresh worker can be under (Celery #4125 looped on this)
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", daemon={"soft_memory_limit": "10MB"})

    done = run_cli("daemon", "--workers", "2", config=config, timeout=60)

    # Then each slot is left empty after one try, and the daemon says why and exits 78
    assert done.returncode == os.EX_CONFIG, done.stderr[-3000:]
    assert done.stderr.count("over its soft memory limit before handling any item") >= 2
    assert done.stderr.count("worker ready") == 2, "a worker was respawned"
    assert "slot 1 stays empty" in done.stderr and "no worker left" in done.stderr


# -- Done when (3): a plugin failing at import ------------------------------------------------------


def test_a_plugin_failing_at_import_is_a_storm_and_the_supervisor_gives_up(
    write_config, record_file, plugin_dir, tmp_path
) -> None:
    # Given a plugin that raises at import, and a small storm limit
    (plugin_dir / "broken.py").write_text("raise RuntimeError('cannot start')\ndef register(api): pass\n")
    config = write_config(
        f"sqlite:///{tmp_path / 'q.sqlite'}", daemon={"spawn_delay": "50ms", "storm_attempts": 3, "storm_window": "1m"}
    )

    # When the daemon starts
    done = run_cli("daemon", "--workers", "2", config=config, timeout=60)

    # Then workers die at start, are respawned, and after the storm limit the supervisor gives
    # up with the workers' error and the plugin error's exit code
    assert done.returncode == os.EX_CONFIG, done.stderr[-3000:]
    assert "respawn storm: 4 worker crashes" in done.stderr
    assert "no worker ever became ready: giving up" in done.stderr
    assert "exited 78 at start: plugin 'broken' failed to import" in done.stderr
    assert "RuntimeError: cannot start" in done.stderr


def test_a_storm_in_a_serving_daemon_backs_off_before_giving_up(
    write_config, record_file, plugin_dir, tmp_path, daemons, monkeypatch
) -> None:
    # Given a serving daemon whose plugin starts failing at import (a bad deploy)
    marker = tmp_path / "break-now"
    monkeypatch.setenv("BREAK_MARKER", str(marker))
    (plugin_dir / "fragile.py").write_text(
        "import os\nif os.path.exists(os.environ['BREAK_MARKER']):\n    raise ImportError('half-deployed')\n"
        "def register(api): pass\n"
    )
    config = write_config(
        f"sqlite:///{tmp_path / 'q.sqlite'}",
        daemon={"spawn_delay": "50ms", "storm_attempts": 1, "storm_retry_in": "1s", "storm_max_retry": 1},
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", log=log)
    daemons.append(daemon)
    wait_for(lambda: len(ready_workers(config, daemon)) == 1, what="worker ready")

    # When the deploy breaks and the worker dies
    marker.write_text("")
    os.kill(workers(config, daemon)[0].pid, signal.SIGKILL)

    # Then respawning pauses once (storm_max_retry = 1), then the supervisor gives up
    assert daemon.wait(timeout=60) == os.EX_CONFIG
    text = log.read_text()
    assert "no respawn for 1s (pause 1 of 1)" in text
    assert "after 1 pause(s): giving up" in text and "ImportError: half-deployed" in text


# -- Done when (4): the hard time limit ------------------------------------------------------------------


def test_a_handler_stuck_where_sigalrm_cannot_reach_is_killed_and_its_item_dead_lettered(
    db_url, write_config, record_file, plugin_dir, tmp_path, daemons
) -> None:
    # Given a handler stuck in C (system() waiting for a child), a 0.5 s limit + 0.5 s grace,
    # max_retries = 2, a claim_timeout longer than the test, and 20 ordinary items besides
    (plugin_dir / "stuck.py").write_text(STUCK_PLUGIN)
    config = write_config(
        db_url, queue={"claim_timeout": "1h"}, daemon={"time_limit": "0.5s", "time_limit_grace": "0.5s"}
    )
    with statusq.connect(config) as qm:
        stuck = qm.enqueue({}, "stuck")
        for n in range(20):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 0.05}, "count")

    # When two workers run
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    daemons.append(daemon)
    wait_for(lambda: backlog(config)["dead"] == 1 and queue_empty(config), timeout=120, what="stuck item parked")

    # Then the worker holding it was killed and replaced three times (attempts 1-3), the fourth
    # delivery was dead-lettered unrun with the reason, and the other items were handled once
    restarts = status_json(config)["daemons"][0]["restarts"]
    assert stop(daemon) == 0
    records = read_records(record_file)
    assert [r["attempt"] for r in records if r["n"] == "stuck"] == [1, 2, 3]
    assert sorted(r["n"] for r in records if r["n"] != "stuck") == list(range(20))
    assert restarts["time_limit"] == 3 and restarts["crash"] == 0
    [letter] = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert letter["id"] == stuck and letter["attempts"] == 4
    assert "never finished" in letter["error"] and "past time_limit 0.5s + time_limit_grace 0.5s" in letter["error"]
    assert log.read_text().count("killing it") == 3


# -- Done when (5): SIGTERM during a stream ------------------------------------------------------------------


def test_sigterm_during_a_steady_stream_exits_0_losing_nothing_and_doubling_nothing(
    db_url, write_config, record_file, tmp_path, daemons
) -> None:
    # Given a daemon working on a steady stream of items
    config = write_config(db_url)
    daemon = start_daemon(config, "--workers", "2", log=tmp_path / "daemon.log")
    daemons.append(daemon)
    producer = Producer(config, lambda n: {"n": n, "action": "sleep", "seconds": 0.01})
    producer.start()
    wait_for(lambda: len(read_records(record_file)) >= 150, what="the stream flowing")

    # When it gets SIGTERM mid-stream
    daemon.send_signal(signal.SIGTERM)
    code = daemon.wait(timeout=60)
    sent = producer.stop()

    # Then it exits 0 with no item left in flight and none handled twice
    assert code == 0
    assert backlog(config)["in_flight"] == 0
    assert max(Counter(r["n"] for r in read_records(record_file)).values()) == 1
    # And the rest is all still there: a later run handles exactly what was left
    assert run_cli("daemon", "--idle-exit", "1", config=config).returncode == 0
    assert set(handled_once_each(record_file, sent).values()) == {1}


# -- Done when (6): SIGHUP ------------------------------------------------------------------------------------


def test_sighup_replaces_workers_one_by_one_with_the_new_config(
    db_url, write_config, record_file, tmp_path, daemons
) -> None:
    # Given a site greeting "old", max_retries = 2, and two workers on a steady stream
    sites = tmp_path / "sites"
    sites.mkdir()
    site_file = sites / "s.example.toml"
    site_file.write_text('[settings.counter]\ngreeting = "old"\n')
    config = write_config(db_url)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    daemons.append(daemon)
    wait_for(lambda: len(ready_workers(config, daemon)) == 2, what="two workers ready")
    old_pids = {w.pid for w in workers(config, daemon)}
    producer = Producer(config, lambda n: {"n": n})
    producer.start()
    wait_for(lambda: len(read_records(record_file)) >= 50, what="the stream flowing")

    # When the site's greeting and max_retries change, and the daemon gets SIGHUP, while we watch
    # how many workers are ready
    site_file.write_text('[settings.counter]\ngreeting = "new"\n')
    config.write_text(config.read_text().replace("max_retries = 2", "max_retries = 3"))
    fewest = [2]
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            fewest[0] = min(fewest[0], len(ready_workers(config, daemon)))
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    daemon.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload done" in log.read_text(), what="reload done")
    wait_for(lambda: not any(alive(pid) for pid in old_pids), what="old workers gone")
    watching.set()
    watcher.join(timeout=10)
    with statusq.connect(config) as qm:
        failing = qm.enqueue({"n": "failing", "action": "false"}, "count", site="s.example")
    sent = producer.stop()
    wait_for(lambda: queue_empty(config), what="stream handled")

    # Then there was never a moment without a ready worker; new workers use the new greeting and
    # max_retries; and no item of the stream was lost or handled twice
    assert stop(daemon) == 0
    assert fewest[0] >= 1
    records = [r for r in read_records(record_file) if r["n"] != "failing"]
    assert {r["greeting"] for r in records if r["pid"] in old_pids} == {"old"}
    assert {r["greeting"] for r in records if r["pid"] not in old_pids} == {"new"}
    counts = Counter(r["n"] for r in records)
    assert sorted(counts) == sent and set(counts.values()) == {1}, "an item of the stream was lost or doubled"
    assert [r["attempt"] for r in read_records(record_file) if r["n"] == "failing"] == [1, 2, 3, 4]
    [letter] = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert letter["id"] == failing


def test_sighup_with_a_broken_config_keeps_the_running_workers(write_config, record_file, tmp_path, daemons) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    daemons.append(daemon)
    wait_for(lambda: len(ready_workers(config, daemon)) == 2, what="two workers ready")
    before = {w.pid for w in workers(config, daemon)}

    # When the config gets a typo and the daemon SIGHUP
    good = config.read_text()
    config.write_text(good.replace("max_retries", "max_retry"))
    daemon.send_signal(signal.SIGHUP)

    # Then the reload is refused with the reason, and the same workers go on working
    wait_for(lambda: "configuration not reloaded" in log.read_text(), what="reload refused")
    assert "queue.max_retry: unknown key" in log.read_text()
    config.write_text(good)
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1}, "count")
    wait_for(lambda: len(read_records(record_file)) == 1, what="item handled")
    assert {w.pid for w in workers(config, daemon)} == before
    assert stop(daemon) == 0


# -- signals, pid file, detaching, orphans --------------------------------------------------------------------


def test_sigusr1_logs_what_every_worker_is_doing(write_config, record_file, tmp_path, daemons) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    with statusq.connect(config) as qm:
        item = qm.enqueue({"n": 1, "action": "sleep", "seconds": 3}, "count", site="s.example")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    daemons.append(daemon)
    wait_for(lambda: len(read_records(record_file)) == 1 and len(ready_workers(config, daemon)) == 2, what="busy")

    daemon.send_signal(signal.SIGUSR1)

    wait_for(lambda: log.read_text().count("generation 0:") == 2, what="the dump")
    text = log.read_text()
    assert f"supervisor pid {daemon.pid} running: 2 worker process(es)" in text
    assert "busy" in text and f"item id={item} site=s.example transport=count attempt=1" in text
    assert "generation 0: idle; rss" in text
    assert stop(daemon) == 0


def test_pidfile_refuses_a_second_daemon_and_goes_away_with_the_first(
    write_config, record_file, tmp_path, daemons
) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    pidfile = tmp_path / "run" / "statusq.pid"
    first = start_daemon(config, "--workers", "1", "--pidfile", str(pidfile))
    daemons.append(first)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() == str(first.pid), what="pid file")

    second = run_cli("daemon", "--workers", "1", "--pidfile", str(pidfile), config=config, timeout=60)

    assert second.returncode == os.EX_CANTCREAT
    assert f"held by a running daemon (pid {first.pid})" in second.stderr
    assert stop(first) == 0
    assert not pidfile.exists()


def test_detached_daemon_reports_its_start_and_stops_on_sigterm(write_config, record_file, tmp_path) -> None:
    # Given a daemon started with --daemon: the command returns once the daemon runs
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    pidfile, logfile = tmp_path / "statusq.pid", tmp_path / "statusq.log"
    started = run_cli(
        "daemon", "--daemon", "--workers", "1", "--pidfile", str(pidfile), "--logfile", str(logfile), config=config
    )
    assert started.returncode == 0, started.stderr
    pid = int(pidfile.read_text())
    try:
        # Then it works, detached from us, and logs to its file
        with statusq.connect(config) as qm:
            qm.enqueue({"n": 1}, "count")
        wait_for(lambda: len(read_records(record_file)) == 1, what="item handled")
        assert os.getsid(pid) != os.getsid(0), "still in our session"
        again = run_cli("daemon", "--daemon", "--pidfile", str(pidfile), config=config)
        assert again.returncode == os.EX_CANTCREAT and "held by a running daemon" in again.stderr
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="daemon gone")
    assert not pidfile.exists()
    assert "supervisor stopped (exit 0)" in logfile.read_text()


def test_workers_drain_and_exit_when_their_supervisor_is_sigkilled(
    write_config, record_file, tmp_path, daemons
) -> None:
    # Given a daemon whose worker is in the middle of an item
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "action": "sleep", "seconds": 1}, "count")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    daemons.append(daemon)
    wait_for(lambda: len(read_records(record_file)) == 1 and len(ready_workers(config, daemon)) == 2, what="busy")
    pids = [w.pid for w in workers(config, daemon)]

    # When the supervisor is SIGKILLed
    daemon.kill()
    daemon.wait(timeout=30)

    # Then both workers notice, the busy one finishes and acks its item, and both exit
    wait_for(lambda: not any(alive(pid) for pid in pids), what="workers gone")
    assert backlog(config) == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
    assert len(read_records(record_file)) == 1
    text = log.read_text()
    assert "the supervisor is gone" in text or "SIGTERM: finishing the item in hand" in text
