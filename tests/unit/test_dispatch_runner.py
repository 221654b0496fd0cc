"""statusq.dispatcher.runner and manager: claims, failures isolated per queue, hung runs, forced
and empty runs, the IoManager's small turns; with the real store on in-memory SQLite."""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from statusq.dispatcher.manager import DispatcherManager
from statusq.dispatcher.runner import ActiveRun, Dispatcher, Report
from statusq.dispatcher.simulate import Simulation
from statusq.dispatcher.status import queue_view
from statusq.errors import QueueError
from statusq.periodic import QueueSpec, WorkItem, declare


def serial(name: str = "tasks", **options: Any) -> QueueSpec:
    return declare(name, "serial", transport="task", plugin="test", **{"frequency": 60, **options})


def batch(name: str = "cron", n: int = 250, **options: Any) -> QueueSpec:
    members = [f"s{i:03d}" for i in range(n)]
    options = {"min_runs": 6, "max_runs": 12, **options}  # Aegir's cron queue
    return declare(name, "batch", transport="cron", plugin="test", members=lambda: members, **options)


def other_dispatcher(sim: Simulation, owner: str = "other") -> Dispatcher:
    return Dispatcher(
        sim.registry, sim.store, sim.queue_manager, owner=owner, claim_expiry=60.0, chunk=100, clock=sim.clock
    )


def test_a_serial_timer_enqueues_one_marked_item_per_run() -> None:
    sim = Simulation([serial()])
    [report] = sim.tick()
    assert (report.status, report.seq, report.items) == ("dispatched", 1, 1)
    [item] = sim.queue_manager.items
    assert item.payload == {"queue": "tasks", "key": "tasks", "run": 1}
    assert item.headers == {"dispatch-queue": "tasks", "dispatch-run": "1", "dispatch-key": "tasks"}
    assert item.transport == "task"
    sim.work()
    sim.clock.now += 59
    assert sim.tick() == []
    sim.clock.now += 1
    assert [r.seq for r in sim.tick()] == [2]


def test_a_serial_source_gives_at_most_items_per_run_and_an_empty_one_records_no_run() -> None:
    pending = [WorkItem(f"task-{i}", site="a.example", payload={"task": i}) for i in range(12)]

    def source(limit: int) -> list[WorkItem]:
        taken, pending[:] = pending[: limit + 3], pending[limit:]  # a sloppy source returns too many
        return taken

    sim = Simulation([serial(source=source, items=5)])
    start = sim.clock.now
    assert sim.tick()[0].items == 5
    assert sim.queue_manager.items[0].payload == {"task": 0} and sim.queue_manager.items[0].site == "a.example"
    sim.work()
    sim.run_until(start + 60 * 5)
    assert len(sim.queue_manager.items) == 12
    row = sim.store.row("tasks")
    assert row is not None and row.run_seq == 3, "the empty runs after the 12th item recorded nothing"
    assert row.last_run == start + 120 and row.next_due == start + 300


def test_a_claimed_queue_is_skipped_by_others_and_taken_over_once_the_claim_lapses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a dispatcher that claimed a due run and then stalled (or died) before enqueueing
    sim = Simulation([batch()])
    first = sim.dispatcher.begin(sim.registry.get("cron"))  # type: ignore[arg-type]
    assert isinstance(first, ActiveRun)
    other = other_dispatcher(sim)

    # When another dispatcher looks: busy, until the claim expires
    assert other.due().due == []
    assert other.run_now(sim.registry.get("cron")).status == "busy"  # type: ignore[arg-type]
    sim.clock.now += 61
    taken = other.run_now(sim.registry.get("cron"))  # type: ignore[arg-type]
    assert (taken.status, taken.seq, taken.items) == ("dispatched", 1, 42)

    # Then the stalled one finds its claim gone before it enqueues anything: no run twice
    lost = "queue 'cron': claim lost (it lapsed and another dispatcher took over)"
    assert sim.dispatcher.step(first) == Report("cron", "lost", detail=lost)
    assert len(sim.queue_manager.items) == 42
    assert "claim lost" in caplog.text


def test_a_dispatcher_that_saw_a_run_due_does_not_run_it_again_after_another_did() -> None:
    # Given dispatcher A about to claim a due run, and B finishing that very run just before
    sim = Simulation([serial()])
    spec = sim.registry.get("tasks")
    assert spec is not None
    other = other_dispatcher(sim)
    real_claim = sim.store.claim

    def claim_after_the_other_ran(name: str, owner: str, now: float, expires: float) -> bool:
        if owner == "sim":
            sim.store.claim = real_claim  # type: ignore[method-assign]
            assert other.run_now(spec).status == "dispatched"
            sim.work()
        return real_claim(name, owner, now, expires)

    sim.store.claim = claim_after_the_other_ran  # type: ignore[method-assign]

    # When A claims: the queue is free again, but no longer due
    report = sim.dispatcher.run_now(spec)

    # Then A dispatches nothing and lets go
    assert report.status == "not-due"
    assert len(sim.queue_manager.items) == 1
    row = sim.store.row("tasks")
    assert row is not None and row.claim_owner is None


def test_two_dispatchers_ticking_in_any_order_never_dispatch_a_run_twice() -> None:
    sim = Simulation([batch(n=900, frequency=3600), serial(frequency=60)])
    dispatchers = [sim.dispatcher, other_dispatcher(sim, "b"), other_dispatcher(sim, "c")]
    rng = random.Random(5)
    start = sim.clock.now
    while sim.clock.now < start + 7200:
        rng.shuffle(dispatchers)
        for dispatcher in dispatchers:
            begun = [dispatcher.begin(spec) for spec in dispatcher.due().due]
            # interleave their turns: each steps the runs it holds one chunk at a time
            active = [run for run in begun if isinstance(run, ActiveRun)]
            while active:
                active = [run for run in active if dispatcher.step(run) is None]
        sim.work()
        sim.clock.now = min(sim.next_due() or start + 7200, start + 7200)
    cron = [i.payload for i in sim.queue_manager.items if i.payload["queue"] == "cron"]
    assert set(Counter((p["period"], p["key"]) for p in cron).values()) == {1}
    assert len(cron) == 1800
    tasks = [i.payload["run"] for i in sim.queue_manager.items if i.payload["queue"] == "tasks"]
    assert tasks == list(range(1, 121)), "each serial run once, none skipped"


def test_a_failing_queue_is_recorded_and_backs_off_while_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken(limit: int) -> list[str]:
        raise RuntimeError("the task table is gone")

    sim = Simulation([serial("broken", source=broken, frequency=600), batch()])
    reports = {r.queue: r for r in sim.tick()}
    assert reports["broken"].status == "failed" and "RuntimeError: the task table is gone" in reports["broken"].detail
    assert reports["cron"].status == "dispatched"
    row = sim.store.row("broken")
    assert row is not None and row.last_error == "RuntimeError: the task table is gone"
    assert row.next_due == sim.clock.now + 60 and row.last_run is None and row.claim_owner is None
    view = queue_view(sim.registry.get("broken"), row, sim.clock.now)  # type: ignore[arg-type]
    assert view.status == "error"
    assert "Traceback" in caplog.text, "a plugin's failure is logged with its traceback"


def test_an_enqueue_failure_mid_run_keeps_what_was_enqueued_and_the_next_queue_still_runs() -> None:
    tasks = [f"t{i}" for i in range(10)]
    sim = Simulation([serial("a", source=lambda n: tasks[:n], items=10), batch("b")], chunk=3)
    sim.queue_manager.fail = lambda transport, count: transport == "task" and count >= 4
    reports = {r.queue: r for r in sim.tick()}
    assert reports["a"].status == "failed" and "broker unavailable" in reports["a"].detail
    assert reports["b"].status == "dispatched"
    row = sim.store.row("a")
    assert row is not None and row.run is not None
    assert (row.run.items, row.run.sealed, row.last_run is not None) == (4, True, True), "the run really started"
    assert row.next_due == sim.clock.now + 60, "and the schedule moved on"


def test_a_run_that_could_not_enqueue_anything_is_not_a_last_run() -> None:
    sim = Simulation([serial()])
    sim.queue_manager.fail = lambda transport, count: True
    [report] = sim.tick()
    row = sim.store.row("tasks")
    assert report.status == "failed" and row is not None
    assert (row.last_run, row.run_seq, row.run) == (None, 0, None)


def test_a_hung_run_is_reported_once_and_stops_holding_its_queue(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulation([serial(frequency=5, timeout=10)])
    start = sim.clock.now
    sim.tick()
    sim.clock.now = start + 5
    assert sim.tick() == [], "running, not hung: the next run waits"
    view = queue_view(sim.registry.get("tasks"), sim.store.row("tasks"), sim.clock.now)  # type: ignore[arg-type]
    assert (view.status, view.running_for) == ("running", 5)
    assert sim.next_due() == pytest.approx(start + 10, abs=0.01), "the next tick is when it would hang"
    sim.clock.now = start + 10.5
    with caplog.at_level(logging.WARNING):
        [report] = sim.tick()
    assert "queue tasks: run 1 hung: running for 10s, past its timeout of 10s" in caplog.text
    assert report.seq == 2
    caplog.clear()
    sim.clock.now = start + 30
    sim.tick()
    assert "run 1 hung" not in caplog.text and "run 2 hung" in caplog.text, "each reported once"
    # And the status is computed when shown, so it is right even if no dispatcher ticks
    sim.clock.now = start + 41
    view = queue_view(sim.registry.get("tasks"), sim.store.row("tasks"), sim.clock.now)  # type: ignore[arg-type]
    assert (view.status, view.run, view.running_for) == ("hung", 3, 11)


def test_disabled_queues_wait_and_a_forced_run_goes_anyway_unless_one_is_running() -> None:
    sim = Simulation([serial()])
    spec = sim.registry.get("tasks")
    assert spec is not None
    sim.store.ensure([spec])
    sim.store.set_overrides("tasks", {"enabled": False})
    assert sim.tick() == []
    assert sim.dispatcher.run_now(spec).status == "disabled"
    assert sim.dispatcher.run_now(spec, forced=True).status == "dispatched"
    assert sim.dispatcher.run_now(spec, forced=True).status == "running"


def test_a_forced_batch_run_with_the_period_done_starts_the_next_period() -> None:
    sim = Simulation([batch(n=10, min_runs=1, max_runs=1)])
    spec = sim.registry.get("cron")
    assert spec is not None
    sim.tick()
    sim.work()
    sim.clock.now += 1
    report = sim.dispatcher.run_now(spec, forced=True)
    assert (report.status, report.items) == ("dispatched", 10)
    assert {i.payload["period"] for i in sim.queue_manager.items[10:]} == {2}


def test_the_manager_does_one_small_turn_per_poll() -> None:
    # Given the dispatcher in a worker's loop, 250 members, 10 items per turn
    sim = Simulation([batch()], chunk=10)
    manager = DispatcherManager(sim.dispatcher, tick=2.0, clock=sim.clock)
    assert manager.timeout() <= 0

    # When the loop polls: a tick, a begin, then one chunk per poll
    assert manager.poll() is False and manager.timeout() == 0.0
    manager.poll()
    assert manager.busy() and sim.queue_manager.items == []
    polls = 0
    while manager.busy():
        manager.poll()
        polls += 1
        assert len(sim.queue_manager.items) <= 10 * polls
    assert polls == 5 and len(sim.queue_manager.items) == 42

    # Then it sleeps until the next tick (another dispatcher or an operator may change things)
    assert manager.timeout() == pytest.approx(2.0)


def test_the_manager_survives_a_database_outage_and_lets_go_on_stop(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    sim = Simulation([batch()], chunk=10, url=f"sqlite:///{tmp_path / 'd.sqlite'}")  # stop() closes it
    manager = DispatcherManager(sim.dispatcher, tick=2.0, clock=sim.clock)
    manager.poll()
    manager.poll()
    manager.poll()  # one chunk of run 1 enqueued

    def down(*args: object) -> None:
        raise QueueError("database sqlite://: unable to open database file")

    real, sim.store.renew = sim.store.renew, down  # type: ignore[method-assign,assignment]
    assert manager.poll() is False
    sim.store.renew = real  # type: ignore[method-assign]
    assert "unable to open database file" in caplog.text
    assert not manager.busy()
    row = sim.store.row("cron")
    assert row is not None and row.run is not None and row.run.sealed and row.claim_owner is None

    # And a stop mid-run seals the run and releases the claim for the next dispatcher
    sim.clock.now += 601  # run 1 (never worked) is hung now, and run 2 due
    for _ in range(3):
        manager.poll()
    assert manager.busy()
    manager.stop()
    row = sim.store.row("cron")
    assert row is not None and row.claim_owner is None and row.run is not None and row.run.sealed
