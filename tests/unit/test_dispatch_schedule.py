"""statusq.dispatcher.schedule: Aegir's batch formula (fixed), slots in a period, serial cadence."""

from __future__ import annotations

import pytest

from statusq.dispatcher.schedule import (
    EPS,
    ScheduleState,
    Settings,
    batch_shape,
    is_due,
    needs_new_period,
    plan_batch,
    plan_serial,
    rescheduled,
)
from statusq.periodic import declare

#: Aegir's cron queue: an hour, 6 to 12 runs, a run per 100 sites.
CRON = Settings(
    kind="batch", enabled=True, frequency=3600.0, items=0, timeout=600.0, threshold=100, min_runs=6, max_runs=12
)
SERIAL = Settings(kind="serial", enabled=True, frequency=300.0, items=5, timeout=600.0)
T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("total", "runs", "items", "interval"),
    [
        (250, 6, 42, 600.0),  # the issue's table
        (900, 9, 100, 400.0),
        (5_000, 12, 417, 300.0),
    ],
)
def test_the_issue_table(total: int, runs: int, items: int, interval: float) -> None:
    shape = batch_shape(total, CRON)
    assert (shape.runs, shape.items_per_run, shape.interval) == (runs, items, interval)


@pytest.mark.parametrize(
    ("total", "runs", "items"),
    [
        (0, 1, 0),  # empty: one (empty) slot per period, no division by zero
        (1, 1, 1),  # never more runs than items (Aegir: 6 crons an hour for one site)
        (5, 5, 1),
        (6, 6, 1),
        (599, 6, 100),  # still at the minimum
        (601, 7, 86),  # whole runs: ceil(6.01) = 7, not 6.01 runs
        (950, 10, 95),
        (1_200, 12, 100),
        (1_201, 12, 101),  # the maximum applies (Aegir's $thread typo ignored it)
        (1_000_000, 12, 83_334),
    ],
)
def test_clamping_edges(total: int, runs: int, items: int) -> None:
    shape = batch_shape(total, CRON)
    assert (shape.runs, shape.items_per_run) == (runs, items)
    assert shape.runs * shape.items_per_run >= total, "a period covers every item"
    assert shape.interval * shape.runs == pytest.approx(CRON.frequency), "runs fill the period exactly"


def test_operator_items_replace_the_clamp() -> None:
    fixed = Settings(
        kind="batch", enabled=True, frequency=3600.0, items=20, timeout=600.0, threshold=100, min_runs=6, max_runs=12
    )
    assert batch_shape(250, fixed).runs == 13  # ceil(250 / 20), beyond max_runs: the operator asked
    assert batch_shape(250, fixed).items_per_run == 20
    assert batch_shape(3, fixed).runs == 1


def test_default_threshold_one_and_min_equal_max() -> None:
    one = Settings(
        kind="batch", enabled=True, frequency=60.0, items=0, timeout=1.0, threshold=1, min_runs=3, max_runs=3
    )
    assert batch_shape(1_000, one).runs == 3
    assert batch_shape(2, one).runs == 2


def test_slots_within_a_period_follow_elapsed_time_not_a_run_count() -> None:
    state = ScheduleState(next_due=None, period_start=T0, total=250, dispatched=0)
    first = plan_batch(state, CRON, T0)
    assert (first.slot, first.size, first.next_due) == (0, 42, T0 + 600)
    # Run 3 of 6 arriving on time after two runs took 84 items
    third = plan_batch(ScheduleState(T0 + 1200, T0, 250, 84), CRON, T0 + 1200)
    assert (third.slot, third.size, third.next_due) == (2, 42, T0 + 1800)
    # The last slot is due at the period's end exactly, whatever the float rounding
    last = plan_batch(ScheduleState(T0 + 3000, T0, 250, 209), CRON, T0 + 3000)
    assert (last.slot, last.size, last.next_due) == (5, 41, T0 + 3600)


def test_a_late_run_takes_a_bigger_share_so_the_period_still_covers_everything() -> None:
    # The dispatcher was down for the first half of the period: 3 slots left for all 250 items
    plan = plan_batch(ScheduleState(T0 + 600, T0, 250, 0), CRON, T0 + 1800)
    assert (plan.slot, plan.size) == (3, 84)


def test_items_added_mid_period_are_spread_over_the_remaining_runs() -> None:
    # 84 dispatched in 2 runs, then 60 sites were added: 226 left over 4 runs
    plan = plan_batch(ScheduleState(T0 + 1200, T0, 310, 84), CRON, T0 + 1200)
    assert plan.size == 57
    # ...and removed ones shrink the remaining runs instead of leaving holes
    assert plan_batch(ScheduleState(T0 + 1200, T0, 150, 84), CRON, T0 + 1200).size == 17


def test_a_rounding_hair_before_a_boundary_counts_as_the_boundary() -> None:
    third_slot = T0 + 3 * (3600 / 7)
    state = ScheduleState(next_due=third_slot, period_start=T0, total=700, dispatched=300)
    settings = Settings(kind="batch", enabled=True, frequency=3600.0, items=0, timeout=1.0, threshold=100, max_runs=12)
    assert plan_batch(state, settings, third_slot - EPS / 10).slot == 3
    assert is_due(state, third_slot - EPS / 10)


def test_new_periods() -> None:
    assert needs_new_period(ScheduleState(), CRON, T0), "the first run starts a period"
    running = ScheduleState(next_due=T0 + 600, period_start=T0, total=250, dispatched=42)
    assert not needs_new_period(running, CRON, T0 + 600)
    assert needs_new_period(running, CRON, T0 + 3600)
    done = ScheduleState(next_due=T0 + 3600, period_start=T0, total=250, dispatched=250)
    assert not needs_new_period(done, CRON, T0 + 100)
    assert needs_new_period(done, CRON, T0 + 100, forced=True), "a forced run with nothing left starts the next"


def test_serial_keeps_its_cadence_and_restarts_after_a_long_stop() -> None:
    assert plan_serial(ScheduleState(), SERIAL, T0) == plan_serial(ScheduleState(), SERIAL, T0)
    assert plan_serial(ScheduleState(), SERIAL, T0).next_due == T0 + 300
    on_time = plan_serial(ScheduleState(next_due=T0), SERIAL, T0 + 0.7)  # ticked 0.7 s late
    assert (on_time.size, on_time.next_due) == (5, T0 + 300)
    after_a_day = plan_serial(ScheduleState(next_due=T0), SERIAL, T0 + 86_400)
    assert after_a_day.next_due == T0 + 86_400 + 300, "no burst of catch-up runs"
    assert plan_serial(ScheduleState(next_due=T0 + 200), SERIAL, T0, forced=True).next_due == T0 + 300


def test_rescheduling_after_an_operator_changes_the_frequency() -> None:
    ran = ScheduleState(next_due=T0 + 60, last_run=T0)
    slower = Settings(kind="serial", enabled=True, frequency=3600.0, items=5, timeout=1.0)
    assert rescheduled(ran, slower, T0 + 10) == T0 + 3600, "set to hourly: not due in a minute any more"
    faster = Settings(kind="serial", enabled=True, frequency=1.0, items=5, timeout=1.0)
    assert rescheduled(ScheduleState(next_due=T0 + 3600, last_run=T0), faster, T0 + 10) == T0 + 10
    assert rescheduled(ScheduleState(), slower, T0) is None, "never ran: still due at once"
    batch = ScheduleState(next_due=T0 + 600, period_start=T0, total=250, dispatched=42, last_run=T0)
    half_hour = Settings(kind="batch", enabled=True, frequency=1800.0, items=0, timeout=1.0, min_runs=6, max_runs=12)
    assert rescheduled(batch, half_hour, T0 + 1) == T0 + 300


def test_settings_from_a_declaration_and_overrides() -> None:
    spec = declare("cron", "batch", transport="t", plugin="p", members=list, min_runs=6, max_runs=12)
    assert Settings.effective(spec).frequency == 3600.0
    changed = Settings.effective(spec, enabled=False, frequency=60.0, items=7, timeout=5.0)
    assert (changed.enabled, changed.frequency, changed.items, changed.timeout) == (False, 60.0, 7, 5.0)
    assert (changed.min_runs, changed.max_runs) == (6, 12)
