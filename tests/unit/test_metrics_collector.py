"""statusq.metrics.collector and .sources: the supervisor's series, from state files and rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from statusq.dispatcher.tables import QueueRow, RunRow
from statusq.metrics.collector import Backlog, Cached, DaemonCollector, DispatchQueue
from statusq.metrics.scrape import Samples
from statusq.metrics.sources import dispatch_view
from statusq.state import ItemInHand, RunDir, SupervisorState, WorkerState, worker_file, write_json

NOW = 1_800_000_000.0


def write_worker(
    run: RunDir, slot: int, pid: int, state: str, *, generation: int = 0, rss: int = 0, others: int = 0
) -> None:
    worker = WorkerState(slot, pid, generation, state=state, rss=rss, started_at=NOW - 60 + generation)
    if state == "busy":
        worker.item = ItemInHand("7", "a.example", "demo", 1, NOW - 1, 0.0)
        worker.others = [ItemInHand(str(8 + n), "a.example", "demo", 1, NOW, 0.0) for n in range(others)]
    write_json(worker_file(run.path, pid), worker.to_dict())


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    run = RunDir(tmp_path / "var", 4711)
    run.create()
    return run


def registry_of(collector: DaemonCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def scrape(collector: DaemonCollector) -> Samples:
    return Samples.parse(generate_latest(registry_of(collector)).decode())


def test_workers_restarts_and_rss_come_from_the_state_files(run: RunDir) -> None:
    # Given a supervisor keeping 3 workers: slot 1 busy, slot 2 idle and being replaced by a
    # starting worker of the next generation, slot 3 failed at start, and a dead worker's file
    restarts = {"crash": 2, "memory": 5, "time_limit": 1}
    run.write_supervisor(SupervisorState(4711, None, 3, None, state="reloading", restarts=restarts))
    write_worker(run, 1, 101, "busy", rss=10 << 20, others=3)  # 4 in hand ([daemon] concurrency)
    write_worker(run, 2, 102, "idle", rss=20 << 20)
    write_worker(run, 2, 103, "starting", generation=1, rss=30 << 20)
    write_worker(run, 3, 104, "failed")
    write_worker(run, 3, 999, "idle")  # its process is gone

    found = scrape(DaemonCollector(run, is_alive=lambda pid: pid != 999, rss=lambda pid: 0 if pid == 101 else pid))

    assert found.get("statusq_up") == 1
    states = {s.labels["state"]: s.value for s in found.select("statusq_workers")}
    assert states == {"starting": 1, "idle": 1, "busy": 1, "exiting": 1}
    assert found.get("statusq_workers_expected") == 3
    assert found.get("statusq_items_in_flight") == 4
    # A fresh reading where there is one, else the state file's; a slot's newest worker counts
    rss = {s.labels["slot"]: s.value for s in found.select("statusq_worker_rss_bytes")}
    assert rss == {"1": 10 << 20, "2": 103, "3": 104}
    assert {s.labels["cause"]: s.value for s in found.select("statusq_worker_restarts_total")} == restarts


def test_before_the_supervisor_wrote_its_file_only_what_is_known_is_served(run: RunDir) -> None:
    found = scrape(DaemonCollector(run, is_alive=lambda pid: True))
    assert found.get("statusq_up") == 1
    assert found.sum("statusq_workers") == 0
    assert found.get("statusq_workers_expected") is None
    assert found.get("statusq_worker_restarts_total", cause="crash") is None


def test_backlog_and_dispatch_series(run: RunDir) -> None:
    backlog = Cached(lambda: Backlog(ready=5, delayed=2, in_flight=1, dead=3), 5.0, "backlog")
    queues = [
        DispatchQueue("cron", last_run=NOW - 30, running=True, hung=False, items=100),
        DispatchQueue("fresh", last_run=None, running=False, hung=False, items=None),
    ]
    dispatch = Cached(lambda: queues, 5.0, "dispatch")

    found = scrape(DaemonCollector(run, backlog, dispatch, is_alive=lambda pid: True, clock=lambda: NOW))

    assert {s.labels["state"]: s.value for s in found.select("statusq_backlog_items")} == {
        "ready": 5,
        "delayed": 2,
        "in_flight": 1,
    }
    assert found.get("statusq_dead_letters") == 3
    assert found.get("statusq_dispatch_last_run_age_seconds", queue="cron") == 30
    assert found.get("statusq_dispatch_last_run_age_seconds", queue="fresh") is None  # never ran
    assert found.get("statusq_dispatch_running", queue="cron") == 1
    assert found.get("statusq_dispatch_hung", queue="fresh") == 0
    assert found.get("statusq_dispatch_items", queue="cron") == 100
    assert found.get("statusq_dispatch_items", queue="fresh") is None


def test_what_a_backend_cannot_know_is_left_out_not_served_as_zero(run: RunDir) -> None:
    # ActiveMQ: no delayed count (its scheduler holds retries outside the queues)
    activemq = Cached(lambda: Backlog(ready=4, delayed=None, in_flight=1, dead=0), 5.0, "backlog")
    found = scrape(DaemonCollector(run, activemq, is_alive=lambda pid: True))
    assert {s.labels["state"]: s.value for s in found.select("statusq_backlog_items")} == {"ready": 4, "in_flight": 1}
    assert found.get("statusq_dead_letters") == 0

    # RabbitMQ: nothing at all, so not even the families' names
    rabbitmq = Cached(lambda: Backlog(None, None, None, None), 5.0, "backlog")
    text = generate_latest(registry_of(DaemonCollector(run, rabbitmq, is_alive=lambda pid: True))).decode()
    assert "statusq_backlog_items" not in text and "statusq_dead_letters" not in text
    assert "statusq_up 1.0" in text


def test_a_failing_source_leaves_its_series_out_and_is_asked_again_after_ttl(run: RunDir, caplog) -> None:
    now = [0.0]
    calls = []

    def load() -> Backlog:
        calls.append(now[0])
        if len(calls) == 1:
            raise OSError("database down")
        return Backlog(1, 0, 0, 0)

    backlog = Cached(load, 5.0, "backlog", clock=lambda: now[0])
    collector = DaemonCollector(run, backlog, is_alive=lambda pid: True)

    assert scrape(collector).get("statusq_dead_letters") is None
    assert "backlog left out: database down" in caplog.text
    now[0] = 4.0
    assert scrape(collector).get("statusq_dead_letters") is None  # not asked again within the ttl
    now[0] = 5.0
    assert scrape(collector).get("statusq_backlog_items", state="ready") == 1
    now[0] = 9.0
    assert scrape(collector).get("statusq_backlog_items", state="ready") == 1
    assert calls == [0.0, 5.0]


def test_a_source_that_fails_by_timing_out_is_asked_again_only_a_minute_later() -> None:
    # A broker without the statistics plugin never answers: each scrape would wait the timeout
    now = [0.0]
    calls = []

    def load() -> Backlog:
        calls.append(now[0])
        now[0] += 5.0  # the wait for an answer that never comes
        raise TimeoutError("no answer from ActiveMQ's statistics plugin within 5s")

    backlog = Cached(load, 5.0, "backlog", clock=lambda: now[0])

    assert backlog.get() is None
    now[0] = 30.0
    assert backlog.get() is None
    now[0] = 61.0
    assert backlog.get() is None
    assert calls == [0.0, 61.0]


def queue_row(name: str, kind: str, *, run: RunRow | None = None, **fields: Any) -> QueueRow:
    values: dict[str, Any] = dict.fromkeys(QueueRow.__dataclass_fields__)
    values.update(name=name, kind=kind, transport="t", plugin="p", period=0, total=0, dispatched=0, run_seq=0)
    values.update(run=run, **fields)
    return QueueRow(**values)


def run_row(started: float, timeout: float, *, planned: int = 5, finished: float | None = None) -> RunRow:
    return RunRow(1, 0, "w", started, timeout, planned, planned, 0, 0, True, finished, None, None)


def test_dispatch_view_from_rows_alone() -> None:
    rows = [
        queue_row("serial-running", "serial", run=run_row(NOW - 10, 60), last_run=NOW - 10),
        queue_row("serial-hung", "serial", run=run_row(NOW - 100, 60), last_run=NOW - 100),
        queue_row("serial-override", "serial", items=9, run=run_row(NOW - 300, 60, finished=NOW - 299)),
        queue_row("batch", "batch", total=1234),
        queue_row("never", "serial"),
    ]
    view = {q.name: q for q in dispatch_view(rows, NOW)}

    assert (view["serial-running"].running, view["serial-running"].hung, view["serial-running"].items) == (
        True,
        False,
        5,
    )
    assert (view["serial-hung"].running, view["serial-hung"].hung) == (False, True)
    assert (view["serial-override"].running, view["serial-override"].items) == (False, 9)
    assert view["batch"].items == 1234
    assert view["never"].items is None and view["never"].last_run is None
