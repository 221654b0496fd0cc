"""When a queue runs and how many items each run takes: pure functions of a state and a clock.

Batch queues use Aegir's ``hosting_queues`` formula (runs per period = total / threshold,
clamped to ``min_runs..max_runs``; a run every period / runs; items per run = total / runs) with
its bugs fixed:

- Aegir compared ``$thread`` (a typo) with ``max_threads``, so the maximum never applied; here
  it does, and runs are a whole number (``ceil``), not 2.5 runs per period.
- Aegir rounded the interval *up* (``ceil(frequency / threads)``), so fewer runs than planned
  fitted in a period and some items waited more than a period; here run ``j`` of a period is due
  at exactly ``start + j * period / runs``.
- Aegir computed items per run once, from the total at that moment, and picked "least recently
  cronned" sites without remembering which were already handed out, so sites added or removed
  mid-period, slow runs and failures made some sites run twice and others not at all.  Here each
  run takes ``ceil(remaining / runs_left)`` of the items *not yet dispatched this period*, so
  every item is dispatched exactly once per period and the load stays even as the set changes.
- Aegir ran a batch queue ``min_threads`` times per period even with fewer items than runs
  (1 site, 6 runs: 6 crons an hour); here there are never more runs than items.
- Zero items or a zero threshold divided by zero; here an empty queue just waits a period.

Everything here is pure, with ``now`` passed in, so the formula and a whole period can be tested
with a fake clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from statusq.periodic import Kind, QueueSpec

if TYPE_CHECKING:
    from statusq.dispatcher.tables import QueueRow

#: Slack for float rounding of slot boundaries (``start + 3 * (period / 3)`` may land a hair
#: before ``start + period``); far below any meaningful period.
EPS = 1e-3


@dataclass(frozen=True, slots=True)
class Settings:
    """A queue's effective settings: the plugin's declaration with the operator's overrides."""

    kind: Kind
    enabled: bool
    frequency: float
    #: Serial: items per run.  Batch: 0 for the formula, else a fixed number of items per run.
    items: int
    timeout: float
    threshold: int = 100
    min_runs: int = 1
    max_runs: int = 6

    @classmethod
    def effective(
        cls,
        spec: QueueSpec,
        *,
        enabled: bool | None = None,
        frequency: float | None = None,
        items: int | None = None,
        timeout: float | None = None,
    ) -> Settings:
        """None keeps the declared value: an override can be dropped to fall back to the plugin's."""
        return cls(
            kind=spec.kind,
            enabled=spec.enabled if enabled is None else enabled,
            frequency=spec.frequency if frequency is None else frequency,
            items=spec.items if items is None else items,
            timeout=spec.timeout if timeout is None else timeout,
            threshold=spec.threshold,
            min_runs=spec.min_runs,
            max_runs=spec.max_runs,
        )


def settings_for(spec: QueueSpec, row: QueueRow | None) -> Settings:
    """The settings in force: the declaration, and the overrides stored in the queue's row."""
    if row is None:
        return Settings.effective(spec)
    return Settings.effective(spec, enabled=row.enabled, frequency=row.frequency, items=row.items, timeout=row.timeout)


@dataclass(frozen=True, slots=True)
class BatchShape:
    """How a period of a batch queue is cut: ``runs`` runs, one every ``interval`` seconds."""

    runs: int
    interval: float
    items_per_run: int


def batch_shape(total: int, settings: Settings) -> BatchShape:
    """The fixed formula (see the module docstring); an operator's ``items`` replaces the clamp."""
    if settings.items > 0:
        runs = math.ceil(total / settings.items)
    else:
        runs = min(max(math.ceil(total / settings.threshold), settings.min_runs), settings.max_runs)
    runs = max(1, min(runs, total))  # never more runs than items; an empty queue still has a period
    per_run = math.ceil(total / runs) if total > 0 else 0
    return BatchShape(runs=runs, interval=settings.frequency / runs, items_per_run=per_run)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store knows about a queue's schedule (a row of ``statusq_dispatch_queues``)."""

    next_due: float | None = None
    period_start: float | None = None
    total: int = 0
    #: Items dispatched since ``period_start``.
    dispatched: int = 0
    last_run: float | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.dispatched)


@dataclass(frozen=True, slots=True)
class RunPlan:
    """One run: how many items to take now, and when the queue is due next."""

    size: int
    next_due: float
    #: Batch: this run's slot in the period (0-based) and the period's number of runs.
    slot: int = 0
    runs: int = 1


def is_due(state: ScheduleState, now: float) -> bool:
    return state.next_due is None or now >= state.next_due - EPS


def needs_new_period(state: ScheduleState, settings: Settings, now: float, *, forced: bool = False) -> bool:
    """A batch queue starts a period at its first run, and again once the period is over.

    A forced run with nothing left in this period starts the next one early, since "run it now"
    that dispatches nothing would surprise an operator.
    """
    if state.period_start is None or now >= state.period_start + settings.frequency - EPS:
        return True
    return forced and state.remaining == 0


def _slot(elapsed: float, interval: float, runs: int) -> int:
    return min(runs - 1, max(0, math.floor((elapsed + EPS) / interval)))


def plan_batch(state: ScheduleState, settings: Settings, now: float) -> RunPlan:
    """The run due now within the current period (call :func:`needs_new_period` first).

    The slot comes from the time elapsed in the period, not from a count of runs, so a run that
    came late (a stopped daemon, a hung previous run) is followed by fewer, larger runs and the
    period still covers every item; a total that changed mid-period re-cuts the remaining slots.
    """
    assert state.period_start is not None, "plan_batch needs a started period"
    start = state.period_start
    shape = batch_shape(state.total, settings)
    slot = _slot(now - start, shape.interval, shape.runs)
    runs_left = shape.runs - slot
    size = math.ceil(state.remaining / runs_left)
    next_due = start + settings.frequency if slot + 1 >= shape.runs else start + (slot + 1) * shape.interval
    return RunPlan(size=size, next_due=next_due, slot=slot, runs=shape.runs)


def plan_serial(state: ScheduleState, settings: Settings, now: float, *, forced: bool = False) -> RunPlan:
    """Up to ``items`` items, then the next run one frequency after this one was due.

    Counting from when it was due (not when it ran) keeps a queue on its cadence despite tick
    granularity; after a long stop it restarts from now instead of firing a burst of catch-ups.
    """
    base = now if forced or state.next_due is None else state.next_due
    next_due = base + settings.frequency
    if next_due <= now:
        next_due = now + settings.frequency
    return RunPlan(size=settings.items, next_due=next_due)


def rescheduled(state: ScheduleState, settings: Settings, now: float) -> float | None:
    """The next due time after an operator changed the frequency or items (None: due at once).

    A queue set from every minute to every hour must not still fire in a minute, and one set from
    every hour to every minute must not wait out the hour.
    """
    if state.last_run is None:
        return state.next_due
    if settings.kind == "serial":
        return max(state.last_run + settings.frequency, now)
    if state.period_start is None:
        return None
    shape = batch_shape(state.total, settings)
    slot = _slot(state.last_run - state.period_start, shape.interval, shape.runs)
    if slot + 1 >= shape.runs:
        return state.period_start + settings.frequency
    return state.period_start + (slot + 1) * shape.interval
