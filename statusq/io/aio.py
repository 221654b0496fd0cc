"""Async handlers (``async def handle``) on one event loop in a thread of its own.

The loop runs in a thread started at the first async item, with uvloop when it is installed
(optional: ``pip install uvloop``).  The worker's loop thread hands each job over with
``call_soon_threadsafe``; the job runs as a task, whose copy of the context holds its own site,
and comes back through :class:`~statusq.io.jobs.Completions`.  A time limit cancels the task; one
that swallows the cancellation (or blocks the event loop) is abandoned by the watchdog like a
stuck thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

from statusq.errors import ItemTimeLimitExceeded
from statusq.io.jobs import Completions, Job
from statusq.outcome import Result
from statusq.processor import ItemProcessor
from statusq.sites import site_context

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed, else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 -- optional, and only in a worker that has async handlers
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class AsyncRunner:
    def __init__(self, processor: ItemProcessor, completions: Completions) -> None:
        self.processor = processor
        self.completions = completions
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._incoming: deque[Job] = deque()
        self._scheduled = False

    @property
    def loop_name(self) -> str:
        return type(self._loop).__module__ if self._loop is not None else "none"

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="statusq-asyncio", daemon=True)
        self._thread.start()
        if not ready.wait(_START_TIMEOUT):
            raise RuntimeError("the event loop thread did not start")
        log.info("event loop for async handlers started (%s)", type(loop).__module__)
        self._loop = loop
        return loop

    def submit(self, job: Job) -> None:
        """Queued, and the loop woken once for all jobs queued until it takes them: a wake-up
        per job (a write to the loop's pipe, the GIL handed over) cost more than the job."""
        loop = self._loop or self._start()
        self._incoming.append(job)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon_threadsafe(self._begin)

    def _begin(self) -> None:
        self._scheduled = False  # before taking: a job queued from now on schedules anew
        loop = asyncio.get_running_loop()
        incoming = self._incoming
        while incoming:
            job = incoming.popleft()
            job.task = loop.create_task(self._run(job), context=job.context)

    async def _run(self, job: Job) -> None:
        delivery, call = job.delivery, job.call
        started = time.perf_counter()
        result: Result
        try:
            try:
                with site_context(call.site):
                    done = await call.handler.handle(call.item)  # type: ignore[misc]
            except asyncio.CancelledError:
                if not job.interrupted:
                    raise
                exc = ItemTimeLimitExceeded(f"handler ran past the time limit of {job.limit:g}s (cancelled)")
                result = self.processor.outcome(delivery, call, None, exc, time.perf_counter() - started)
            except Exception as exc:
                result = self.processor.outcome(delivery, call, None, exc, time.perf_counter() - started)
            else:
                result = self.processor.outcome(delivery, call, done, None, time.perf_counter() - started)
        except Exception as exc:
            result = self.processor.internal_error(delivery, exc)
        job.finished = True
        self.completions.put(job, result)

    def interrupt(self, job: Job) -> bool:
        if job.finished or job.interrupted or self._loop is None:
            return True
        job.interrupted = True
        self._loop.call_soon_threadsafe(self._cancel, job)
        return True

    @staticmethod
    def _cancel(job: Job) -> None:
        if job.task is not None and not job.finished:
            job.task.cancel()

    def abandon(self, job: Job) -> bool:
        if job.finished:
            return False
        job.abandoned = True  # it may still finish: its completion is then ignored
        return True

    def settled(self, job: Job) -> None:
        pass

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(1.0)
