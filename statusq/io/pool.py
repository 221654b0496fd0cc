"""Sync handlers on a pool of threads, each item under its own time limit.

SIGALRM reaches only the main thread, so a pool thread's limit is enforced from the loop's
watchdog (:mod:`statusq.io.concurrent`): it raises :class:`ThreadTimeLimitExceeded` inside the
handler's thread (``PyThreadState_SetAsyncExc``, as Dramatiq's time-limit middleware does).  That
reaches Python code only; a thread stuck in C (a blocking call without a timeout) is abandoned
after a grace period: its item is settled as a time-limit failure, the thread is left to finish
on its own and a new one takes its place.  Threads start as items need them, up to ``size``.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time

from statusq.errors import ItemTimeLimitExceeded, ThreadTimeLimitExceeded
from statusq.io.jobs import Completions, Job
from statusq.outcome import Result
from statusq.processor import ItemProcessor

log = logging.getLogger(__name__)

_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc  # (unsigned long id, PyObject *exc or NULL)


def raise_in_thread(ident: int, exc: type[BaseException]) -> bool:
    """Have ``exc`` raised in thread ``ident`` at its next Python instruction."""
    return bool(_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc)))


def clear_in_thread(ident: int) -> None:
    """Forget an exception :func:`raise_in_thread` asked for that has not been raised yet."""
    _async_exc(ctypes.c_ulong(ident), None)


class ThreadPool:
    """Runs :meth:`ItemProcessor.call` for each job on up to ``size`` threads (daemon threads: a
    stuck one never keeps the process from exiting)."""

    def __init__(self, size: int, processor: ItemProcessor, completions: Completions) -> None:
        self.size = size
        self.processor = processor
        self.completions = completions
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        #: Threads serving jobs (abandoned ones no longer count), and jobs given to them not yet
        #: settled: both counted by the loop's thread only.
        self.threads = 0
        self._running = 0
        self._made = 0

    def submit(self, job: Job) -> None:
        self._running += 1
        if self._running > self.threads:
            self._spawn()
        self._jobs.put(job)

    def _spawn(self) -> None:
        self._made += 1
        self.threads += 1
        thread = threading.Thread(target=self._serve, name=f"statusq-handler-{self._made}", daemon=True)
        thread.start()

    def settled(self, job: Job) -> None:
        self._running -= 1

    def interrupt(self, job: Job) -> bool:
        with job.lock:
            if job.finished or job.interrupted:
                return True
            if not job.thread:
                return False  # not started yet: ask again
            job.interrupted = True
            raise_in_thread(job.thread, ThreadTimeLimitExceeded)
        return True

    def abandon(self, job: Job) -> bool:
        with job.lock:
            if job.finished:
                return False  # its completion is on its way
            job.abandoned = True
        self.threads -= 1  # the next submit starts a thread in its place
        return True

    def stop(self) -> None:
        for _ in range(self.threads):
            self._jobs.put(None)

    # -- the pool's threads ---------------------------------------------------------------------

    def _serve(self) -> None:
        ident = threading.get_ident()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            result = self._work(job, ident)
            self.completions.put(job, result)
            if job.abandoned:
                log.warning("abandoned handler thread of id=%s came back; it ends", job.delivery.id)
                return

    def _work(self, job: Job, ident: int) -> Result:
        """Never raises, and leaves no interrupt pending for the next job: the watchdog raises at
        most once per job, and once ``finished`` is set under the lock it raises no more."""
        result: Result | None = None
        try:
            with job.lock:
                job.thread = ident
            try:
                result = job.context.run(self.processor.call, job.delivery, job.call)
            except ItemTimeLimitExceeded:  # the interrupt came as the handler returned
                result = self.processor.timed_out(job.delivery, job.call, time.monotonic() - job.started)
            except Exception as exc:
                result = self.processor.internal_error(job.delivery, exc)
            with job.lock:
                job.finished = True
                interrupted = job.interrupted
            if interrupted:
                clear_in_thread(ident)
        except ItemTimeLimitExceeded:  # ... or while this thread wrapped up
            job.finished = True
            if result is None:
                result = self.processor.timed_out(job.delivery, job.call, time.monotonic() - job.started)
        return result
