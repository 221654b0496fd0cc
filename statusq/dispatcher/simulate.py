"""The real dispatcher and store against a fake clock and an in-memory queue manager.

Tests and ``bench/dispatch_sim.py`` drive whole periods through this in milliseconds: the same
claims, SQL and formula as a daemon, with only the wall clock and the workers replaced.  Items
are "handled" through the statements :class:`~statusq.dispatcher.hooks.DispatchHooks` runs in a
worker, many rows per call so a million-item period stays quick.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from statusq import codec
from statusq.config import Config
from statusq.dispatcher.hooks import run_item
from statusq.dispatcher.runner import Dispatcher, Report
from statusq.dispatcher.store import DispatchStore
from statusq.errors import QueueError
from statusq.item import Delivery, Message
from statusq.outcome import Outcome
from statusq.periodic import QueueRegistry, QueueSpec
from statusq.queues.memory import MemoryQueueManager


@dataclass(slots=True)
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True, slots=True)
class Enqueued:
    payload: Any
    transport: str
    site: str
    headers: dict[str, str]
    at: float


class CollectingQueueManager(MemoryQueueManager):
    """The in-memory backend, keeping what is enqueued in order, decoded, instead of queueing
    it (a simulated period may enqueue a million items; :meth:`Simulation.work` settles them).
    Every enqueue still goes through the real checks and encoding.  ``fail(transport, enqueued
    so far)`` simulates an outage."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(Config.model_validate({"queue": {"subsystem": "memory"}}))
        self.clock = clock
        self.items: list[Enqueued] = []
        self.fail: Callable[[str, int], bool] | None = None

    def _put(self, message: Message) -> str:
        if self.fail is not None and self.fail(message.transport, len(self.items)):
            raise QueueError("broker unavailable (simulated)")
        payload = codec.decode(message.body, message.content_type)
        self.items.append(Enqueued(payload, message.transport, message.site, message.headers, self.clock()))
        return str(len(self.items))


class Simulation:
    """A dispatcher, its store (SQLite in memory unless ``url`` is given), a clock and workers."""

    def __init__(self, specs: Iterable[QueueSpec], *, url: str = "sqlite:///:memory:", chunk: int = 100) -> None:
        self.clock = FakeClock()
        self.registry = QueueRegistry()
        for spec in specs:
            self.registry.register(spec)
        self.store = DispatchStore(url)
        self.queue_manager = CollectingQueueManager(self.clock)
        self.dispatcher = Dispatcher(
            self.registry, self.store, self.queue_manager, owner="sim", claim_expiry=60.0, chunk=chunk, clock=self.clock
        )
        self._worked = 0
        self._ids = itertools.count(1)

    def tick(self) -> list[Report]:
        """One dispatcher tick at the current time, every due run carried out completely."""
        return [self.dispatcher.run_now(spec) for spec in self.dispatcher.due().due]

    def next_due(self) -> float | None:
        return self.dispatcher.due().soonest

    def work(self, *, outcome: Callable[[Enqueued], Outcome] | None = None) -> list[Enqueued]:
        """Workers settle everything enqueued since the last call, now (DONE unless ``outcome``
        says otherwise): the hook's own statement, many rows at once."""
        batch = self.queue_manager.items[self._worked :]
        self._worked = len(self.queue_manager.items)
        settled = []
        for item in batch:
            delivery = Delivery(
                id=str(next(self._ids)),
                site=item.site,
                transport=item.transport,
                body=b"{}",
                content_type="application/json",
                headers=item.headers,
                attempt=1,
                enqueued_at=item.at,
            )
            mark = run_item(delivery)
            assert mark is not None, "the dispatcher marks every item it enqueues"
            result = outcome(item) if outcome else Outcome.DONE
            if result is not Outcome.RETRY:
                settled.append((*mark, result is Outcome.DONE))
        if settled:
            self.store.items_settled(settled, self.clock.now)
        return batch

    def run_until(self, end: float, *, on_tick: Callable[[float], None] | None = None) -> None:
        """Tick and work at every due time from now until ``end`` (exclusive), then stop there."""
        while self.clock.now < end:
            if on_tick is not None:
                on_tick(self.clock.now)
            self.tick()
            self.work()
            soonest = self.next_due()
            if soonest is not None and soonest <= self.clock.now:
                raise RuntimeError(f"a queue is due again at once ({soonest} <= {self.clock.now})")
            self.clock.now = end if soonest is None else min(end, soonest)
