"""Whole periods of a batch queue with a fake clock: the real dispatcher, store (SQLite in memory)
and SQL; only the wall clock and the workers are simulated.  Exactly once per period, even load,
least recently processed first, and all of it while items come and go mid-period."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from statusq.dispatcher.simulate import Enqueued, Simulation
from statusq.outcome import Outcome
from statusq.periodic import WorkItem, declare

HOUR = 3600.0


def cron_queue(members: list[str], **options: object) -> Simulation:
    spec = declare(
        "cron", "batch", transport="cron", plugin="test", frequency=HOUR,
        members=lambda: [WorkItem(m, site=m) for m in members],
        min_runs=6, max_runs=12, **options,
    )  # fmt: skip
    return Simulation([spec])


def by_period(items: list[Enqueued]) -> dict[int, Counter[str]]:
    periods: dict[int, Counter[str]] = defaultdict(Counter)
    for item in items:
        periods[item.payload["period"]][item.payload["key"]] += 1
    return periods


def run_sizes(items: list[Enqueued], period: int) -> list[int]:
    sizes = Counter(item.payload["run"] for item in items if item.payload["period"] == period)
    return [sizes[run] for run in sorted(sizes)]


@pytest.mark.parametrize("n", [1, 99, 100, 250, 900, 5_000])
def test_every_item_exactly_once_per_period_with_even_runs(n: int) -> None:
    # Given a cron queue over n sites
    sites = [f"site{i:05d}.example" for i in range(n)]
    sim = cron_queue(sites)
    start = sim.clock.now

    # When two periods pass
    sim.run_until(start + 2 * HOUR)

    # Then each period dispatched every site exactly once, in evenly sized runs
    periods = by_period(sim.queue_manager.items)
    assert sorted(periods) == [1, 2]
    for counts in periods.values():
        assert set(counts) == set(sites) and set(counts.values()) == {1}
    sizes = run_sizes(sim.queue_manager.items, 1)
    assert max(sizes) / (sum(sizes) / len(sizes)) <= 1.1, sizes
    assert len(sizes) == min(n, max(6, min(12, -(-n // 100))))
    # And each item went to its own site
    assert all(item.site == item.payload["key"] for item in sim.queue_manager.items)


def test_the_next_period_takes_the_least_recently_processed_first() -> None:
    sites = [f"s{i:03d}" for i in range(250)]
    sim = cron_queue(sites)
    start = sim.clock.now
    sim.run_until(start + HOUR)
    first = [item.payload["key"] for item in sim.queue_manager.items]
    sim.run_until(start + 2 * HOUR)
    second = [item.payload["key"] for item in sim.queue_manager.items[250:]]
    assert second == first, "processed in the same order, so each site waits one period, not up to two"


def test_items_added_and_removed_mid_period_keep_exactly_once_and_even_load() -> None:
    # Given 900 sites (9 runs of 100) and a change after the third run of the period
    sites = [f"a{i:04d}" for i in range(900)]
    sim = cron_queue(sites)
    start = sim.clock.now
    dispatched_before: list[str] = []

    def churn(now: float) -> None:
        if now == start + 3 * 400:
            dispatched_before.extend(item.payload["key"] for item in sim.queue_manager.items)
            removed = set(dispatched_before[:50]) | set(sites[-150:])  # some done already, some not
            sites[:] = [s for s in sites if s not in removed] + [f"b{i:04d}" for i in range(300)]

    # When the period runs with the change in the middle
    sim.run_until(start + HOUR, on_tick=churn)

    # Then every site present at the end was dispatched once, removed ones at most once
    counts = by_period(sim.queue_manager.items)[1]
    assert set(counts.values()) == {1}
    assert set(sites) <= set(counts), "the 300 new sites were fitted into the same period"
    assert len(counts) == 300 + 900 - 150  # 150 never-dispatched sites were dropped, not run
    # And the runs after the change are even among themselves
    after = run_sizes(sim.queue_manager.items, 1)[3:]
    assert max(after) / (sum(after) / len(after)) <= 1.1, after
    # And the next period covers the new set exactly
    sim.run_until(start + 2 * HOUR)
    assert by_period(sim.queue_manager.items)[2] == Counter(sites)


def test_a_failing_item_runs_once_per_period_and_is_never_marked_processed() -> None:
    sites = [f"s{i:03d}" for i in range(250)]
    sim = cron_queue(sites)
    start = sim.clock.now
    sim.tick()
    sim.clock.now += 30  # the run's items are handled half a minute later
    sim.work(outcome=lambda item: Outcome.DEAD if item.payload["key"] == "s005" else Outcome.DONE)
    sim.run_until(start + 2 * HOUR)
    assert by_period(sim.queue_manager.items)[2]["s005"] == 1, "not retried within the period"
    with sim.store.engine.connect() as conn:
        from sqlalchemy import select

        from statusq.dispatcher.tables import members

        processed = dict(conn.execute(select(members.c.key, members.c.last_processed)).all())
    assert processed["s004"] is not None
    second = [item.payload["key"] for item in sim.queue_manager.items if item.payload["period"] == 2]
    assert second.index("s005") < second.index("s004"), "the failed one goes before its successful run-mates"


def test_a_backlog_spanning_the_period_boundary_does_not_skip_or_double_items() -> None:
    # Given workers far behind: nothing is handled until the second period has begun, and runs
    # that soon count as hung, so that they stop holding the queue back
    sites = [f"s{i:03d}" for i in range(250)]
    sim = cron_queue(sites, timeout=60)
    start = sim.clock.now
    while sim.clock.now < start + HOUR:
        sim.tick()
        sim.clock.now = sim.next_due() or start + HOUR
    sim.tick()  # the first run of period 2
    sim.work()  # now the whole backlog of period 1 (and run 1 of period 2) is handled
    sim.run_until(start + 2 * HOUR)
    periods = by_period(sim.queue_manager.items)
    assert set(periods[1].values()) == {1} and len(periods[1]) == 250
    assert set(periods[2].values()) == {1} and len(periods[2]) == 250


def test_a_run_still_being_worked_holds_the_next_one_back_until_it_ends() -> None:
    sites = [f"s{i:03d}" for i in range(250)]
    sim = cron_queue(sites)
    start = sim.clock.now
    sim.tick()
    sim.clock.now = start + 600
    assert sim.tick() == [], "run 1 is still running (not hung): run 2 waits, as under Aegir's lock"
    sim.work()
    [report] = sim.tick()
    assert (report.status, report.seq, report.items) == ("dispatched", 2, 42)


def test_an_empty_queue_waits_a_period_and_picks_up_items_when_they_come() -> None:
    sites: list[str] = []
    sim = cron_queue(sites)
    start = sim.clock.now
    sim.run_until(start + HOUR / 2)
    assert sim.queue_manager.items == []
    sites.extend(["late.example"])
    sim.run_until(start + 2 * HOUR)
    assert [item.payload["key"] for item in sim.queue_manager.items] == ["late.example"]


def test_planning_a_run_reads_only_its_items_however_many_there_are() -> None:
    # 20,000 members: a run picks its 1,667 through the index, without scanning the rest
    sites = [f"s{i:05d}" for i in range(20_000)]
    sim = cron_queue(sites)
    sim.tick()
    with sim.store.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT key, site FROM statusq_dispatch_members "
            "WHERE queue = 'cron' AND rank < 1 ORDER BY rank, key LIMIT 10"
        ).all()
    detail = " ".join(str(row[-1]) for row in plan)
    assert "USING INDEX statusq_dispatch_members_next" in detail or "COVERING INDEX" in detail, detail
    assert "TEMP B-TREE" not in detail, "ordered by the index, not sorted"
    assert run_sizes(sim.queue_manager.items, 1) == [1667]
