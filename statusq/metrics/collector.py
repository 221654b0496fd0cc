"""The supervisor's part of the model, assembled at scrape time: no second bookkeeping.

Workers, their states and RSS, and the restarts by cause come from the state files the
supervisor and its workers keep anyway (:mod:`statusq.state`); the backlog and the
dead letters from the queue backend, and the periodic queues from the dispatcher's table, each
reused for ``[metrics] backlog_ttl`` so that a scrape every second costs a query every few.
A source that fails leaves its series out of that scrape and is logged; the rest is served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from statusq.cluster import counts
from statusq.limits import MemoryProbe
from statusq.state import RESTART_COUNTERS, RunDir, WorkerState, alive

if TYPE_CHECKING:
    from statusq.queues.db.daemons import DaemonRow  # SQLAlchemy: only once a scrape reads the cluster
    from statusq.queues.db.pauses import Pause  # SQLAlchemy: only once a scrape reads the pauses

log = logging.getLogger(__name__)

T = TypeVar("T")

#: ``statusq_workers`` states; a worker that failed at start is on its way out.
WORKER_STATES = ("starting", "idle", "busy", "exiting")
_STATE_OF = {"failed": "exiting"}
_WARN_EVERY = 60.0
_SLOW_FAILURE = 1.0  # seconds a failing load took before it counts as a timeout


class Cached(Generic[T]):
    """A value loaded at most once per ``ttl`` seconds, None while its source fails."""

    def __init__(self, load: Callable[[], T], ttl: float, what: str, clock: Callable[[], float] = time.monotonic):
        self.load, self.ttl, self.what, self.clock = load, ttl, what, clock
        self._value: T | None = None
        self._until = -1.0
        self._warned = -_WARN_EVERY
        self._lock = threading.Lock()  # two scrapes at once make one query

    def get(self) -> T | None:
        with self._lock:
            now = self.clock()
            if now < self._until:
                return self._value
            try:
                self._value = self.load()
            except Exception as exc:
                self._value = None
                if now - self._warned >= _WARN_EVERY:
                    self._warned = now
                    log.warning("metrics: %s left out: %s", self.what, exc)
                if self.clock() - now >= _SLOW_FAILURE:
                    # A source that fails by timing out (a broker without the statistics plugin)
                    # would make every scrape wait that long: ask it again only now and then.
                    self._until = now + max(self.ttl, _WARN_EVERY)
                    return None
            self._until = now + self.ttl
            return self._value


@dataclass(frozen=True, slots=True)
class Backlog:
    """What a backend can tell of its queues; None where it cannot know (its series is left out):
    on ActiveMQ ``delayed`` is what waits in the shared store (unknown with ``delays = "broker"``:
    a retry's backoff is then in its scheduler, outside any queue's count), and RabbitMQ over
    STOMP tells nothing at all."""

    ready: int | None
    delayed: int | None
    in_flight: int | None
    dead: int | None


@dataclass(frozen=True, slots=True)
class DispatchQueue:
    """One periodic queue as the dispatch series show it."""

    name: str
    last_run: float | None
    running: bool
    hung: bool
    #: Items per period (batch: its members; serial: what its latest run planned); None: unknown.
    items: int | None


class DaemonCollector(Collector):
    """Reads one supervisor's folder of state files (and the cached sources) at each scrape."""

    def __init__(
        self,
        run_dir: RunDir,
        backlog: Cached[Backlog] | None = None,
        dispatch: Cached[list[DispatchQueue]] | None = None,
        pauses: Cached[list[Pause]] | None = None,
        cluster: Cached[list[DaemonRow]] | None = None,
        *,
        is_alive: Callable[[int], bool] = alive,
        rss: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.run_dir = run_dir
        self.backlog = backlog
        self.dispatch = dispatch
        self.pauses = pauses
        self.cluster = cluster
        self.is_alive = is_alive
        self.rss = rss or MemoryProbe().rss
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("statusq_up", "1 while the supervisor serves.", value=1)
        yield from self._daemon()
        yield from self._backlog()
        yield from self._dispatch()
        yield from self._pauses()
        yield from self._cluster()

    def _daemon(self) -> Iterator[Metric]:
        supervisor = self.run_dir.supervisor()
        workers = [w for w in self.run_dir.workers() if self.is_alive(w.pid)]
        states = GaugeMetricFamily("statusq_workers", "Worker processes by state.", labels=["state"])
        counts = dict.fromkeys(WORKER_STATES, 0)
        for worker in workers:
            state = _STATE_OF.get(worker.state, worker.state)
            if state in counts:
                counts[state] += 1
        for state, count in counts.items():
            states.add_metric([state], count)
        yield states
        yield GaugeMetricFamily(
            "statusq_items_in_flight", "Items being handled now.", value=sum(w.in_hand for w in workers)
        )
        rss = GaugeMetricFamily("statusq_worker_rss_bytes", "Resident memory per worker slot.", labels=["slot"])
        for slot, worker in sorted(_current_per_slot(workers).items()):
            rss.add_metric([str(slot)], self.rss(worker.pid) or worker.rss)
        yield rss
        if supervisor is None:
            return  # not written yet (the first second of a daemon)
        yield GaugeMetricFamily(
            "statusq_workers_expected", "Workers the supervisor keeps running.", value=supervisor.workers
        )
        restarts = CounterMetricFamily(
            "statusq_worker_restarts", "Workers replaced, by why they ended.", labels=["cause"]
        )
        for cause in RESTART_COUNTERS:
            restarts.add_metric([cause], supervisor.restarts.get(cause, 0))
        yield restarts

    def _backlog(self) -> Iterator[Metric]:
        backlog = self.backlog.get() if self.backlog is not None else None
        if backlog is None:
            return
        states = {"ready": backlog.ready, "delayed": backlog.delayed, "in_flight": backlog.in_flight}
        known = {state: count for state, count in states.items() if count is not None}
        if known:
            family = GaugeMetricFamily("statusq_backlog_items", "Items waiting or in hand, by state.", labels=["state"])
            for state, count in known.items():
                family.add_metric([state], count)
            yield family
        if backlog.dead is not None:
            yield GaugeMetricFamily(
                "statusq_dead_letters", "Items dead-lettered, not yet retried or purged.", value=backlog.dead
            )

    def _dispatch(self) -> Iterator[Metric]:
        queues = self.dispatch.get() if self.dispatch is not None else None
        if queues is None:
            return
        now = self.clock()
        age = GaugeMetricFamily(
            "statusq_dispatch_last_run_age_seconds", "Seconds since the queue last dispatched.", labels=["queue"]
        )
        running = GaugeMetricFamily("statusq_dispatch_running", "1 while a run is in progress.", labels=["queue"])
        hung = GaugeMetricFamily("statusq_dispatch_hung", "1 when the run is past its timeout.", labels=["queue"])
        items = GaugeMetricFamily("statusq_dispatch_items", "Items the queue dispatches per period.", labels=["queue"])
        for queue in queues:
            if queue.last_run is not None:
                age.add_metric([queue.name], max(0.0, now - queue.last_run))
            running.add_metric([queue.name], int(queue.running))
            hung.add_metric([queue.name], int(queue.hung))
            if queue.items is not None:
                items.add_metric([queue.name], queue.items)
        yield from (age, running, hung, items)

    def _pauses(self) -> Iterator[Metric]:
        """``statusq_paused{site, transport}`` 1 per pause in force (one label empty); a resumed
        pause's series is gone, so ``count(statusq_paused) > 0`` alerts on any pause."""
        pauses = self.pauses.get() if self.pauses is not None else None
        if pauses is None:
            return
        family = GaugeMetricFamily(
            "statusq_paused", "1 per site or transport paused (statusq pause).", labels=["site", "transport"]
        )
        for pause in pauses:
            family.add_metric([pause.site, pause.transport], 1)
        yield family

    def _cluster(self) -> Iterator[Metric]:
        """``statusq_cluster_daemons{state="alive"|"gone"}``: the daemons beating in the shared
        store, as this daemon sees them; a gone one stays counted until ``forget_gone``."""
        daemons = self.cluster.get() if self.cluster is not None else None
        if daemons is None:
            return
        family = GaugeMetricFamily(
            "statusq_cluster_daemons", "Daemons in the shared store's heartbeats, by state.", labels=["state"]
        )
        for state, count in counts(daemons, self.clock()).items():
            family.add_metric([state], count)
        yield family


def _current_per_slot(workers: Iterable[WorkerState]) -> dict[int, WorkerState]:
    """During a reload a slot has two workers; the newer one is the slot's."""
    found: dict[int, WorkerState] = {}
    for worker in workers:
        other = found.get(worker.slot)
        if other is None or (worker.generation, worker.started_at) > (other.generation, other.started_at):
            found[worker.slot] = worker
    return found
