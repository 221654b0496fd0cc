"""The queue listener of a worker with several items in hand (``[daemon] concurrency`` > 1, or
async handlers): the loop's thread fetches and settles, handlers run elsewhere.

Why this shape: the consumer (a database connection, the STOMP link and its settlement writer)
and the middleware stay on one thread, exactly as with one item in hand; only the handler's call
moves to a pool thread (:mod:`statusq.io.pool`) or the event loop (:mod:`statusq.io.aio`).  A poll
settles what finished (ack, retry or dead letter, then ``after_item``), looks at time limits, and
fetches while fewer than ``concurrency`` items are in hand.  Each item is acked only after its own
handler finished, whatever the others do.

Time limits (the watchdog): past its limit a handler is interrupted (an exception raised in its
thread, or its task cancelled); one still running ``abandon_after`` later is settled as a
time-limit failure and abandoned, its slot given a new thread; after ``max_abandoned`` of them the
worker asks to be replaced (``on_abandoned``).  The supervisor's hard kill stays the last resort.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable

from statusq.defaults import POLL_MIN
from statusq.errors import QueueError
from statusq.handler import QueueHandler
from statusq.io.aio import AsyncRunner
from statusq.io.jobs import Completions, Executor, Job
from statusq.io.listener import QueueListener
from statusq.io.pool import ThreadPool
from statusq.item import Delivery
from statusq.outcome import Result
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, ControlChannel

log = logging.getLogger(__name__)

#: How soon the watchdog asks again when a thread had not yet taken the job it must interrupt.
_RETRY_INTERRUPT = 0.01


class ConcurrentListener(QueueListener):
    name = "queue"

    def __init__(
        self,
        consumer: Consumer,
        processor: ItemProcessor,
        poll_max: float,
        control: ControlChannel | None = None,
        *,
        concurrency: int,
        cap: Callable[[str], int] | None = None,
        abandon_after: float = 5.0,
        max_abandoned: int | None = None,
    ) -> None:
        super().__init__(consumer, processor, poll_max, control)
        self.concurrency = concurrency
        self.cap = cap or (lambda transport: concurrency)
        self.abandon_after = abandon_after
        self.max_abandoned = max_abandoned if max_abandoned is not None else max(1, concurrency // 4)
        #: Called once ``max_abandoned`` handlers were abandoned (the worker asks to be replaced).
        self.on_abandoned: Callable[[], None] = lambda: None
        self.completions = Completions()
        self.pool = ThreadPool(concurrency, processor, self.completions)
        self.aio = AsyncRunner(processor, self.completions)
        #: Items handed to a handler, oldest first; fetched ones waiting for their transport's cap.
        self.jobs: dict[int, Job] = {}
        self.held: deque[Delivery] = deque()
        self.running: Counter[str] = Counter()
        self.abandoned = 0
        self.winding_down = False
        self._is_async: dict[type, bool] = {}
        self._watch_at = math.inf

    # -- what the master asks -------------------------------------------------------------------

    @property
    def in_hand(self) -> int:
        return len(self.jobs) + len(self.held)

    def _room(self) -> bool:
        return not self.winding_down and self.in_hand < self.concurrency

    def filenos(self) -> list[int]:
        # The consumer's descriptors only while there is room: a readable one would otherwise
        # wake the loop over and over while every slot is busy.
        if self._room():
            return [self.completions.fileno(), *self.consumer.filenos()]
        return [self.completions.fileno()]

    def timeout(self) -> float:
        now = time.monotonic()
        watch = self._watch_at - now
        if self.completions:
            return 0.0
        if not self._room():
            return watch
        return min(watch, self._due - now)

    def more(self) -> bool:
        if self.control is not None and self.control.pending():
            return False
        return bool(self.completions) or (self._room() and self._due == 0.0)

    def holding(self) -> bool:
        return bool(self.jobs or self.held)

    def busy(self) -> bool:
        return self.holding() or super().busy()

    def wind_down(self) -> None:
        """Fetch nothing more; what is in hand finishes (``holding`` says until when), items held
        back by their transport's cap included: they are claimed, and run before the exit."""
        self.winding_down = True

    # -- one poll -------------------------------------------------------------------------------

    def poll(self) -> bool:
        try:
            did = self._settle_finished()
            if time.monotonic() >= self._watch_at:
                self._watch()
            if self.held:
                did = self._start_held() or did
            if self._room():
                did = self._fill() or did
        except QueueError as exc:
            # The backend is down: back off to the cap and try again; never die of it.  An item
            # whose settling failed stays claimed and comes back (at-least-once).
            log.error("queue backend failed, retrying in %.1fs: %s", self.poll_max, exc)
            self._failing = True
            self._interval = self.poll_max
            self._due = time.monotonic() + self._interval
            return False
        self._failing = False
        return did

    def _fill(self) -> bool:
        # The first fetch whatever the backoff says: poll() runs when due or when a descriptor
        # woke the loop, and a frame that woke it must be taken now, not at the backoff's end
        # (an idle worker's enqueue -> start latency was 5.8 ms instead of 1.3 ms).
        did, first = False, True
        while self._room() and (first or self._due <= time.monotonic()):
            first = False
            self.consumer.drain_wakeups()
            delivery = self.consumer.fetch()
            if delivery is None:
                self._due = time.monotonic() + self._interval
                self._interval = min(self.poll_max, self._interval * 2)
                return did
            self._interval = POLL_MIN
            self._due = 0.0
            did = True
            if delivery.redelivered and (delivery := self.count_redelivery(delivery)) is None:
                continue
            if self.running[delivery.transport] >= self.cap(delivery.transport):
                self.held.append(delivery)
            else:
                self._start(delivery)
        return did

    def _start_held(self) -> bool:
        started = False
        for _ in range(len(self.held)):
            delivery = self.held.popleft()
            if self.running[delivery.transport] < self.cap(delivery.transport):
                self._start(delivery)
                started = True
            else:
                self.held.append(delivery)
        return started

    def _start(self, delivery: Delivery) -> None:
        # Each item in a context of its own, not the loop's: what before_item sets for it (the
        # log fields) must not leak to the next item's hooks, nor miss its handler's thread.
        if self._inline(delivery):
            contextvars.copy_context().run(self.processor.process, delivery, self.consumer)
            return
        context = contextvars.copy_context()
        job = context.run(self._begin, delivery, context)
        if job is not None:  # handed over once out of the context: a context is entered by one thread at a time
            self._executor(job).submit(job)

    def _begin(self, delivery: Delivery, context: contextvars.Context) -> Job | None:
        processor = self.processor
        processor.middleware.before_item(delivery)
        try:
            prepared = processor.prepare(delivery)
        except Exception as exc:
            prepared = processor.internal_error(delivery, exc)
        if isinstance(prepared, Result):  # cannot run: no handler, bad body, unusable site
            processor.finish(delivery, self.consumer, prepared)
            return None
        now = time.monotonic()
        job = Job(delivery, prepared, now, prepared.policy.time_limit, context)
        self.jobs[id(job)] = job
        self.running[delivery.transport] += 1
        if job.limit > 0:
            self._watch_at = min(self._watch_at, now + job.limit)
        return job

    def _executor(self, job: Job) -> Executor:
        return self.aio if self._async(job.call.handler) else self.pool

    def _async(self, handler: QueueHandler) -> bool:
        kind = type(handler)
        is_async = self._is_async.get(kind)
        if is_async is None:
            is_async = self._is_async[kind] = inspect.iscoroutinefunction(handler.handle)
        return is_async

    def _inline(self, delivery: Delivery) -> bool:
        """One item in hand and a sync handler (a worker whose plugins also register an async
        one): run it here on the loop's thread, as the one-thread listener does, SIGALRM time
        limit included.  Handed to a pool thread, a no-op item cost nearly half its rate (the
        peer bench: 4,777/s against 8,435/s); with one item in hand nothing runs beside it."""
        if self.concurrency != 1:
            return False
        handler = self.processor.registry.handler(delivery.transport)
        return handler is None or not self._async(handler)

    def _settle_finished(self) -> bool:
        if not self.completions:
            return False
        for job in self.completions.take():
            if self.jobs.pop(id(job), None) is None:
                continue  # abandoned and settled already; its late result is not used
            assert job.result is not None
            self._settle(job, job.result)
        return True

    def _settle(self, job: Job, result: Result) -> None:
        self.running[job.delivery.transport] -= 1
        self._executor(job).settled(job)
        # In a copy of the item's context: the event loop's thread may not have left the task's
        # last step yet, nor an abandoned handler's thread its call, and a context is entered by
        # one thread at a time.
        job.context.copy().run(self.processor.finish, job.delivery, self.consumer, result)

    # -- the watchdog ---------------------------------------------------------------------------

    def _watch(self) -> None:
        now = time.monotonic()
        next_at = math.inf
        for key, job in list(self.jobs.items()):
            if job.limit <= 0:
                continue
            due = job.started + job.limit
            if now < due:
                next_at = min(next_at, due)
                continue
            executor = self._executor(job)
            if not job.interrupted:
                if executor.interrupt(job):
                    log.warning(
                        "id=%s transport=%s ran past its time limit of %gs: interrupting it",
                        job.delivery.id,
                        job.delivery.transport,
                        job.limit,
                    )
                    next_at = min(next_at, due + self.abandon_after)
                else:
                    next_at = min(next_at, now + _RETRY_INTERRUPT)
                continue
            if now < due + self.abandon_after:
                next_at = min(next_at, due + self.abandon_after)
            elif executor.abandon(job):
                del self.jobs[key]
                self._abandoned(job, now)
        self._watch_at = next_at

    def _abandoned(self, job: Job, now: float) -> None:
        self.abandoned += 1
        log.error(
            "id=%s transport=%s did not stop %gs after its time limit: settled as failed, its handler "
            "abandoned (%d of %d before this worker asks to be replaced)",
            job.delivery.id,
            job.delivery.transport,
            self.abandon_after,
            self.abandoned,
            self.max_abandoned,
        )
        self._settle(job, self.processor.timed_out(job.delivery, job.call, now - job.started))
        if self.abandoned >= self.max_abandoned:
            self.on_abandoned()

    # -- the end --------------------------------------------------------------------------------

    def stop(self) -> None:
        """After the drain (or a forced stop): what still runs is left unsettled, so the backend
        gives it back (claims released by the supervisor, broker redelivery)."""
        if self.jobs:
            log.warning("stopping with %d item(s) still running: not acked, they come back", len(self.jobs))
        self.pool.stop()
        self.aio.stop()
        self.completions.close()
        super().stop()
