"""The dispatcher: decides which queue is due, claims it, and enqueues its run in small turns.

One class serves the daemon's timer (:mod:`statusq.dispatcher.manager`), ``statusq dispatch``
and ``statusq queues run``.  A run goes: claim the queue (or skip it: another dispatcher has it)
→ refresh a batch queue's members → plan → enqueue ``chunk`` items per :meth:`Dispatcher.step`
→ record → seal and let go.  Any failure is the queue's alone: it is recorded on that queue,
which backs off, and every other queue goes on (Aegir aborted the whole dispatch instead).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statusq.dispatcher.hooks import HEADER_KEY, HEADER_QUEUE, HEADER_RUN
from statusq.dispatcher.schedule import EPS, Settings, is_due, needs_new_period, plan_batch, plan_serial, settings_for
from statusq.dispatcher.store import ClaimLost, DispatchStore
from statusq.dispatcher.tables import QueueRow, RunRow
from statusq.errors import QueueError
from statusq.periodic import QueueRegistry, QueueSpec, WorkItem, as_work_item
from statusq.queues.base import QueueManager

log = logging.getLogger(__name__)

#: A queue whose run could not start waits this long (or its frequency, if shorter) to try again.
FAILURE_BACKOFF = 60.0


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(exc)).strip().splitlines()[-1]


@dataclass(slots=True)
class ActiveRun:
    """A run this dispatcher holds the claim for and is enqueueing, turn by turn."""

    spec: QueueSpec
    settings: Settings
    seq: int
    period: int
    period_start: float
    planned: int
    next_due: float
    timeout: float
    left: int
    #: Serial queues: what the source returned, still to enqueue.  Batch queues pick per turn.
    pending: list[WorkItem] = field(default_factory=list)
    #: Its runs row exists (so workers can count its items) / it enqueued its first items.
    opened: bool = False
    started: bool = False
    started_at: float = 0.0
    enqueued: int = 0


@dataclass(frozen=True, slots=True)
class Tick:
    due: list[QueueSpec]
    #: When the next queue not due now is due (None: none is scheduled).
    soonest: float | None
    #: Runs this tick found past their timeout, as (queue, run).
    hung: list[tuple[str, RunRow]]


@dataclass(frozen=True, slots=True)
class Report:
    """How an attempt at a queue ended, for logs and ``statusq dispatch``."""

    queue: str
    status: str  # dispatched, empty, not-due, disabled, running, busy, failed, lost
    items: int = 0
    seq: int | None = None
    detail: str = ""

    def __str__(self) -> str:
        run = f" run {self.seq}" if self.seq is not None else ""
        items = f": {self.items} item(s)" if self.status == "dispatched" else ""
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.queue}{run} {self.status}{items}{detail}"


class Dispatcher:
    def __init__(
        self,
        specs: QueueRegistry,
        store: DispatchStore,
        queue_manager: QueueManager,
        *,
        owner: str,
        claim_expiry: float,
        chunk: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.specs = specs
        self.store = store
        self.queue_manager = queue_manager
        self.owner = owner
        self.claim_expiry = claim_expiry
        self.chunk = chunk
        self.clock = clock
        self._ensured = False

    def _rows(self) -> dict[str, QueueRow]:
        if not self._ensured:
            self.store.ensure(self.specs)
            self._ensured = True
        rows = self.store.rows()
        if any(spec.name not in rows for spec in self.specs):  # deleted by hand: put them back
            self.store.ensure(self.specs)
            rows = self.store.rows()
        return rows

    def due(self) -> Tick:
        """One tick: report newly hung runs; the queues due now, and when the next one is.

        One read of the queue rows whatever the number of items (plus a write when a run has just
        hung): a tick costs O(queues).
        """
        now = self.clock()
        rows = self._rows()
        overdue = [
            (name, row.run.seq) for name, row in rows.items() if row.run and row.run.hung(now) and not row.run.hung_at
        ]
        hung = self.store.mark_hung(now, overdue) if overdue else []
        for queue, run in hung:
            log.warning(
                "queue %s: run %d hung: running for %.0fs, past its timeout of %.0fs "
                "(%d of %d item(s) settled, busy with %s)",
                queue,
                run.seq,
                now - run.started,
                run.timeout,
                run.done + run.failed,
                run.items,
                run.current or "nothing reported",
            )
        due, soonest = [], None
        for spec in self.specs:
            row = rows[spec.name]
            if not settings_for(spec, row).enabled:
                continue
            if row.claimed(now) and row.claim_owner != self.owner:
                continue  # another dispatcher is on it; the next tick looks again
            state = row.schedule()
            wake = state.next_due
            if row.run is not None and row.run.running and not row.run.hung(now):
                # The previous run holds the queue until it ends (a later tick sees that) or hangs.
                wake = max(wake or now, row.run.started + row.run.timeout + EPS)
            elif is_due(state, now):
                due.append(spec)
                continue
            if wake is not None:
                soonest = wake if soonest is None else min(soonest, wake)
        return Tick(due, soonest, hung)

    def begin(self, spec: QueueSpec, *, forced: bool = False) -> ActiveRun | Report:
        """Claim the queue and plan its run; a Report when there is nothing to run."""
        now = self.clock()
        row = self.store.row(spec.name)
        if row is None:
            self.store.ensure([spec])
            row = self.store.row(spec.name)
            assert row is not None
        refused = self._refusal(spec, row, forced, now)
        if refused is not None:
            return refused
        if not self.store.claim(spec.name, self.owner, now, now + self.claim_expiry):
            return Report(spec.name, "busy", detail="another dispatcher holds its claim")
        # Only a claim holder changes a queue, so the row read now is the truth; the one read
        # before may predate a run another dispatcher finished meanwhile.
        row = self.store.row(spec.name)
        assert row is not None
        refused = self._refusal(spec, row, forced, now)
        if refused is not None:
            self.store.release(spec.name, self.owner)
            return refused
        settings = settings_for(spec, row)
        try:
            return self._plan(spec, settings, forced, now)
        except Exception as exc:
            return self._failed(spec, settings, exc, started=False)

    def _refusal(self, spec: QueueSpec, row: QueueRow, forced: bool, now: float) -> Report | None:
        if not forced and not settings_for(spec, row).enabled:
            return Report(spec.name, "disabled")
        if not forced and not is_due(row.schedule(), now):
            return Report(spec.name, "not-due", detail=f"due in {(row.next_due or now) - now:.0f}s")
        if row.run is not None and row.run.running and not row.run.hung(now):
            return Report(spec.name, "running", seq=row.run.seq, detail=f"since {now - row.run.started:.0f}s")
        return None

    def _plan(self, spec: QueueSpec, settings: Settings, forced: bool, now: float) -> ActiveRun | Report:
        if spec.kind == "batch":
            assert spec.members is not None
            values = spec.members()
            self.store.sync_members(spec.name, self.owner, values if isinstance(values, list | tuple) else list(values))
            row = self.store.row(spec.name)
            assert row is not None
            if needs_new_period(row.schedule(), settings, now, forced=forced):
                self.store.begin_period(spec.name, self.owner, now)
                row = self.store.row(spec.name)
                assert row is not None and row.period_start is not None
            plan = plan_batch(row.schedule(), settings, now)
            pending: list[WorkItem] = []
        else:
            row = self.store.row(spec.name)
            assert row is not None
            plan = plan_serial(row.schedule(), settings, now, forced=forced)
            if spec.source is None:
                pending = [WorkItem(spec.name)]  # a plain timer: one item per run
            else:
                pending = [as_work_item(v) for v in spec.source(plan.size)][: plan.size]
        size = len(pending) if spec.kind == "serial" else plan.size
        if size == 0:
            self.store.skip(spec.name, self.owner, now, plan.next_due)
            return Report(spec.name, "empty")
        return ActiveRun(
            spec=spec,
            settings=settings,
            seq=row.run_seq + 1,
            period=row.period,
            period_start=row.period_start or now,
            planned=size,
            next_due=plan.next_due,
            timeout=settings.timeout,
            left=size,
            pending=pending,
        )

    def _failed(self, spec: QueueSpec, settings: Settings, exc: Exception, *, started: bool) -> Report:
        """Record the failure on this queue only; a run that never started is retried after a backoff."""
        now = self.clock()
        if isinstance(exc, ClaimLost):
            log.warning("queue %s: %s; stopping this run", spec.name, exc)
            return Report(spec.name, "lost", detail=str(exc))
        error = _describe(exc)
        # A plugin's source failing deserves its traceback; a database or broker being down does not.
        log.error("queue %s: run failed: %s", spec.name, error, exc_info=not isinstance(exc, QueueError))
        retry = None if started else now + min(settings.frequency, FAILURE_BACKOFF)
        try:
            self.store.fail(spec.name, self.owner, now, error, retry)
        except Exception as store_exc:
            log.error("queue %s: cannot record the failure either: %s", spec.name, _describe(store_exc))
        return Report(spec.name, "failed", detail=error)

    def _payload(self, run: ActiveRun, item: WorkItem) -> Any:
        if item.payload is not None:
            return item.payload
        payload: dict[str, Any] = {"queue": run.spec.name, "key": item.key, "run": run.seq}
        if run.spec.kind == "batch":
            payload |= {"site": item.site, "period": run.period}
        return payload

    def step(self, run: ActiveRun) -> Report | None:
        """Enqueue one turn's worth of the run; a Report once the run is fully dispatched."""
        spec = run.spec
        try:
            self.store.renew(spec.name, self.owner, self.clock() + self.claim_expiry)
            if spec.kind == "batch":
                items = self.store.pick(spec.name, run.period_start, min(self.chunk, run.left))
            else:
                items, run.pending = run.pending[: self.chunk], run.pending[self.chunk :]
            if items and not run.opened:
                self._open(run)
            keys, error = self._enqueue(run, items)
            now = self.clock()
            if keys:
                self._record(run, keys, now)
            if error is not None:
                raise error
            if run.left > 0 and len(items) == min(self.chunk, run.left + len(keys)):
                return None
            if not run.started:  # every planned item vanished before the first turn
                self.store.skip(spec.name, self.owner, now, run.next_due)
                return Report(spec.name, "empty")
            self.store.seal(spec.name, self.owner, run.seq, now)
            log.info("queue %s: run %d dispatched %d item(s)", spec.name, run.seq, run.enqueued)
            return Report(spec.name, "dispatched", items=run.enqueued, seq=run.seq)
        except Exception as exc:
            report = self._failed(spec, run.settings, exc, started=run.started)
            if run.started:
                self._seal_quietly(run)
            elif run.opened:
                self._drop_quietly(run)
            return report

    def _enqueue(self, run: ActiveRun, items: list[WorkItem]) -> tuple[list[str], Exception | None]:
        keys: list[str] = []
        priority = run.spec.priority
        for item in items:
            headers = {HEADER_QUEUE: run.spec.name, HEADER_RUN: str(run.seq), HEADER_KEY: item.key}
            try:
                self.queue_manager.enqueue(
                    self._payload(run, item), run.spec.transport, site=item.site, headers=headers, priority=priority
                )
            except Exception as exc:
                return keys, exc
            keys.append(item.key)
        return keys, None

    def _open(self, run: ActiveRun) -> None:
        run.started_at = self.clock()
        fields = {
            "seq": run.seq,
            "period": run.period,
            "dispatcher": self.owner,
            "started": run.started_at,
            "timeout": run.timeout,
            "planned": run.planned,
        }
        self.store.open_run(run.spec.name, self.owner, fields, run.started_at + self.claim_expiry)
        run.opened = True

    def _record(self, run: ActiveRun, keys: list[str], now: float) -> None:
        spec, expires = run.spec, now + self.claim_expiry
        if not run.started:
            self.store.start_run(spec.name, self.owner, run.seq, run.started_at, run.next_due, expires)
            run.started = True
        self.store.record_dispatched(spec.name, self.owner, run.seq, keys, now, expires, batch=spec.kind == "batch")
        run.enqueued += len(keys)
        run.left -= len(keys)

    def _drop_quietly(self, run: ActiveRun) -> None:
        try:
            self.store.drop_run(run.spec.name, run.seq)
        except Exception as exc:
            log.error("queue %s: cannot drop run %d: %s", run.spec.name, run.seq, _describe(exc))

    def _seal_quietly(self, run: ActiveRun) -> None:
        """A run that started and then failed still ends, with what it enqueued."""
        try:
            self.store.seal(run.spec.name, self.owner, run.seq, self.clock())
        except Exception as exc:
            log.error("queue %s: cannot close run %d: %s", run.spec.name, run.seq, _describe(exc))

    def run_now(self, spec: QueueSpec, *, forced: bool = False) -> Report:
        """Begin and finish one run in this process (``statusq dispatch``, ``statusq queues run``)."""
        started = self.begin(spec, forced=forced)
        if isinstance(started, Report):
            return started
        while True:
            report = self.step(started)
            if report is not None:
                return report
