"""The dispatcher end to end: ``statusq daemon`` workers with the dispatcher in their loop,
``statusq queues`` and ``statusq dispatch`` as subprocesses, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RECORDER, STATUSQ, read_records, run_cli, wait_for

pytestmark = pytest.mark.e2e

#: A plugin as a user would write one: queues from $DISPATCH_QUEUES, a handler that records.
PERIODIC_PLUGIN = (
    """
import itertools, json, os, time
from statusq import QueueHandler
from statusq.dispatcher import WorkItem

QUEUES = json.loads(os.environ.get("DISPATCH_QUEUES", "[]"))
HANG = set(json.loads(os.environ.get("DISPATCH_HANG", "[]")))
_numbers = itertools.count()

"""
    + RECORDER
    + """
class Tick(QueueHandler):
    def handle(self, item):
        p = item.payload
        record(queue=p["queue"], key=p["key"], run=p["run"], period=p.get("period"), site=item.site,
               pid=os.getpid(), headers=item.headers)
        if p["key"] in HANG:
            time.sleep(60)
        return True

def sites(n):
    return lambda: [WorkItem(f"site{i:02d}.example", site=f"site{i:02d}.example") for i in range(n)]

def tasks(limit):
    return [f"task-{os.getpid()}-{next(_numbers)}" for _ in range(limit)]

def register(api):
    api.register_handler("tick", Tick)
    for queue in QUEUES:
        queue = dict(queue)
        if "sites" in queue:
            queue["members"] = sites(queue.pop("sites"))
        if queue.pop("tasks", False):
            queue["source"] = tasks
        api.register_queue(queue.pop("name"), transport="tick", **queue)
"""
)

DISPATCHER_TOML = """
[dispatcher]
tick = "100ms"
claim_expiry = "5s"
"""


@pytest.fixture
def periodic(
    plugin_dir: Path, record_file: Path, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Path]:
    """A config with the periodic plugin and the given queues (``sites=N`` / ``tasks=True``)."""
    (plugin_dir / "periodic.py").write_text(PERIODIC_PLUGIN)

    def make(db_url: str, *queues: dict[str, Any], hang: tuple[str, ...] = ()) -> Path:
        monkeypatch.setenv("DISPATCH_QUEUES", json.dumps(list(queues)))
        monkeypatch.setenv("DISPATCH_HANG", json.dumps(list(hang)))
        path: Path = write_config(db_url, DISPATCHER_TOML)
        return path

    return make


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Starts dispatching workers; every one still running at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(config: Path) -> subprocess.Popen[str]:
        log = tmp_path / f"worker{len(started)}.log"
        argv = [*STATUSQ, "--config", str(config), "daemon", "--workers", "1"]
        out = open(log, "w")  # noqa: SIM115 - owned by the process
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=os.environ)
        started.append(process)
        wait_for(lambda: "worker ready" in log.read_text(), timeout=30, what=f"worker ready ({log})")
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def queues_json(config: Path) -> dict[str, dict[str, Any]]:
    result = run_cli("queues", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return {view["name"]: view for view in json.loads(result.stdout)}


def runs_of(records: list[dict[str, Any]], queue: str) -> Counter[int]:
    return Counter(r["run"] for r in records if r["queue"] == queue)


def test_a_batch_queue_over_50_sites_processes_each_site_once_per_period(
    db_url: str, periodic: Callable[..., Path], workers: Callable[[Path], Any], record_file: Path
) -> None:
    # Given a batch queue over 50 sites with a 2-second period cut into 2 runs
    config = periodic(db_url, {"name": "cron", "kind": "batch", "sites": 50, "frequency": "2s", "min_runs": 2})

    # When a worker runs until the third period has begun and the first two are handled
    worker = workers(config)

    def by_period() -> dict[int, Counter[str]]:
        periods: dict[int, Counter[str]] = defaultdict(Counter)
        for r in read_records(record_file):
            periods[r["period"]][r["key"]] += 1
        return periods

    wait_for(lambda: len(by_period()) >= 3 and sum(by_period()[2].values()) >= 50, timeout=30, what="2 periods")
    stop(worker)

    # Then periods 1 and 2 each handled every site exactly once, each for its own site
    periods = by_period()
    sites = {f"site{i:02d}.example" for i in range(50)}
    for period in (1, 2):
        assert set(periods[period]) == sites and set(periods[period].values()) == {1}
    assert all(r["site"] == r["key"] for r in read_records(record_file))
    # And `statusq queues` shows the accounting
    view = queues_json(config)["cron"]
    assert (view["kind"], view["total"], view["runs_per_period"], view["items_per_run"]) == ("batch", 50, 2, 25)
    assert view["period"] >= 3 and view["last_run"] is not None and view["status"] in ("ok", "running")
    assert view["run_items"] == 25 and view["overrides"] == {}
    table = run_cli("queues", config=config).stdout
    assert table.splitlines()[0].split()[:5] == ["NAME", "KIND", "ENABLED", "FREQUENCY", "ITEMS/RUN"]
    assert table.splitlines()[1].split()[:6] == ["cron", "batch", "yes", "2s", "25", "x2"]


def test_a_hanging_handler_is_shown_as_hung(
    db_url: str, periodic: Callable[..., Path], workers: Callable[[Path], Any], record_file: Path
) -> None:
    # Given a serial queue whose handler hangs, with a one-second timeout
    config = periodic(db_url, {"name": "slow", "frequency": "1h", "timeout": "1s"}, hang=("slow",))
    workers(config)
    wait_for(lambda: read_records(record_file), timeout=20, what="the item to start")

    # When its timeout has passed
    wait_for(lambda: queues_json(config)["slow"]["status"] == "hung", timeout=20, what="status hung")

    # Then `statusq queues` says so, with what it is busy with, and a dispatcher tick reports it
    view = queues_json(config)["slow"]
    assert (view["run"], view["current_item"], view["run_done"]) == (1, "slow", 0)
    assert view["running_for"] >= 1
    table = run_cli("queues", config=config).stdout
    assert "hung" in table.splitlines()[1] and "slow: run 1 hung" in table
    tick = run_cli("dispatch", "--queue", "slow", config=config)
    assert tick.returncode == 0, tick.stderr
    assert "slow run 1 hung: running for" in tick.stdout or "run 1 hung" in tick.stderr


def test_a_queue_disabled_with_queues_set_stops_without_a_restart(
    db_url: str, periodic: Callable[..., Path], workers: Callable[[Path], Any], record_file: Path
) -> None:
    # Given two fast serial queues served by a running worker
    config = periodic(db_url, {"name": "a", "frequency": "150ms"}, {"name": "b", "frequency": "150ms"})
    workers(config)
    wait_for(lambda: len(runs_of(read_records(record_file), "a")) >= 2, timeout=20, what="queue a running")

    # When queue a is disabled
    result = run_cli("queues", "set", "a", "--enabled", "false", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:3] == ["a", "serial", "no"]
    a_runs = max(runs_of(read_records(record_file), "a"))
    b_runs = max(runs_of(read_records(record_file), "b"))

    # Then b goes on for several runs while a dispatches at most the run it had already claimed
    wait_for(lambda: max(runs_of(read_records(record_file), "b")) >= b_runs + 5, timeout=20, what="5 more b runs")
    assert max(runs_of(read_records(record_file), "a")) <= a_runs + 1
    view = queues_json(config)["a"]
    assert (view["status"], view["enabled"], view["next_run"], view["overrides"]) == (
        "disabled",
        False,
        None,
        {"enabled": False},
    )
    # And enabling it again brings it back, still without a restart
    assert run_cli("queues", "set", "a", "--enabled", "true", config=config).returncode == 0
    wait_for(lambda: max(runs_of(read_records(record_file), "a")) >= a_runs + 3, timeout=20, what="a again")


def test_queues_set_frequency_and_items_then_a_forced_run(
    db_url: str, periodic: Callable[..., Path], workers: Callable[[Path], Any], record_file: Path
) -> None:
    # Given a serial queue of tasks, 2 per run every 150 ms
    config = periodic(db_url, {"name": "tasks", "tasks": True, "frequency": "150ms", "items": 2})
    workers(config)
    wait_for(lambda: len(runs_of(read_records(record_file), "tasks")) >= 2, timeout=20, what="two runs")

    # When an operator sets it to hourly, 20 items per run
    result = run_cli("queues", "set", "tasks", "--frequency", "1h", "--items", "20", config=config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[:5] == ["tasks", "serial", "yes", "1h", "20"]
    view = queues_json(config)["tasks"]
    assert (view["frequency"], view["items"], view["overrides"]) == (3600, 20, {"frequency": 3600, "items": 20})
    assert view["next_run"] > time.time() + 3000, "rescheduled at once, not after the old interval"

    # Then the worker stops its 150 ms runs (at most one was being dispatched already)...
    before = max(runs_of(read_records(record_file), "tasks"))
    wait_for(lambda: queues_json(config)["tasks"]["status"] == "ok", timeout=20, what="last run settled")
    after = max(runs_of(read_records(record_file), "tasks"))
    assert after <= before + 1

    # ...and `statusq queues run` forces a run of 20 now, which the worker handles
    forced = run_cli("queues", "run", "tasks", config=config)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip() == f"tasks run {after + 1} dispatched: 20 item(s)"
    wait_for(lambda: runs_of(read_records(record_file), "tasks")[after + 1] == 20, timeout=20, what="forced run")
    assert max(runs_of(read_records(record_file), "tasks")) == after + 1
    assert run_cli("queues", "run", "nope", config=config).returncode == os.EX_USAGE


def test_statusq_dispatch_runs_due_queues_once_for_a_crontab(
    db_url: str, periodic: Callable[..., Path], record_file: Path
) -> None:
    # Given no daemon at all, only a crontab calling `statusq dispatch`
    config = periodic(
        db_url,
        {"name": "cron", "kind": "batch", "sites": 50, "frequency": "1h", "min_runs": 3},
        {"name": "tick", "frequency": "1h"},
    )

    # When it runs twice in a row
    first = run_cli("dispatch", config=config)
    second = run_cli("dispatch", config=config)

    # Then the first dispatched each queue's due run, the second found nothing due
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["cron run 1 dispatched: 17 item(s)", "tick run 1 dispatched: 1 item(s)"]
    assert second.stdout.splitlines() == ["cron not due", "tick not due"]
    status = json.loads(run_cli("status", "--json", config=config).stdout)
    assert status["totals"]["ready"] == 18
    # And the items are marked for the hook, so a worker's success is accounted to the run
    done = run_cli("daemon", "--idle-exit", "1", config=config, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    view = queues_json(config)["cron"]
    assert (view["run_done"], view["run_failed"], view["status"]) == (17, 0, "ok")


@pytest.mark.postgres
def test_two_dispatchers_on_one_postgresql_database_never_dispatch_a_run_twice(
    pg_url: str, periodic: Callable[..., Path], workers: Callable[[Path], Any], record_file: Path
) -> None:
    # Given two workers, each with its dispatcher, on one PostgreSQL database
    config = periodic(
        pg_url,
        {"name": "tick", "frequency": "100ms"},
        {"name": "cron", "kind": "batch", "sites": 30, "frequency": "1500ms", "min_runs": 3},
    )
    first, second = workers(config), workers(config)

    # When they compete for 40 serial runs and three batch periods
    def progress() -> bool:
        records = read_records(record_file)
        periods = {r["period"] for r in records if r["queue"] == "cron"}
        return len(runs_of(records, "tick")) >= 40 and max(periods, default=0) >= 3

    wait_for(progress, timeout=60, what="40 runs and 3 periods")
    stop(first)
    stop(second)

    # Then no run was dispatched twice, none was skipped, and both dispatchers took part
    records = read_records(record_file)
    tick = runs_of(records, "tick")
    assert set(tick.values()) == {1}, "a serial run was dispatched twice"
    assert sorted(tick) == list(range(1, max(tick) + 1))
    cron = Counter((r["period"], r["key"]) for r in records if r["queue"] == "cron" and r["period"] <= 2)
    assert len(cron) == 60 and set(cron.values()) == {1}
    from sqlalchemy import create_engine, text

    engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        dispatchers = conn.execute(text("SELECT count(DISTINCT dispatcher) FROM statusq_dispatch_runs")).scalar()
    engine.dispose()
    assert dispatchers == 2
