"""Items in hand in a concurrent worker: one :class:`Job` each, and the way finished ones come back.

Only the loop's thread fetches, settles and runs middleware; pool threads and the event loop only
run handlers, then hand the job back through :class:`Completions` (a deque and a wake-up pipe the
loop selects on).  So the consumer (a SQLite connection, the STOMP settlement writer) stays
single-threaded, and an item is acked only once its own handler finished.
"""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from statusq.item import Delivery
from statusq.outcome import Result
from statusq.processor import Call
from statusq.wakeup import WakePipe


@dataclass(eq=False, slots=True)
class Job:
    """One item handed to a pool thread or the event loop.  ``lock`` orders the watchdog's
    interrupt against the handler's thread marking it finished."""

    delivery: Delivery
    call: Call
    #: time.monotonic() when it was handed over, and its time limit (0: none).
    started: float
    limit: float
    #: The item's own context: its middleware hooks, its handler and its settling run in it, so
    #: what a hook sets per item (the log fields) is that item's in every thread.
    context: contextvars.Context
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: The pool thread running it (threading.get_ident()), 0 until one took it.
    thread: int = 0
    #: The asyncio task running it (async handlers).
    task: Any = None
    finished: bool = False
    interrupted: bool = False
    abandoned: bool = False
    result: Result | None = None


class Executor(Protocol):
    """Where handlers run: a thread pool or an event loop."""

    def submit(self, job: Job) -> None: ...

    def interrupt(self, job: Job) -> bool:
        """Stop the handler now that it is past its limit; False to be asked again later."""

    def abandon(self, job: Job) -> bool:
        """Give up on a handler that did not stop; False if it finished meanwhile."""

    def settled(self, job: Job) -> None:
        """The loop settled ``job`` (from its completion or as abandoned)."""

    def stop(self) -> None: ...


class Completions:
    """Finished jobs, from any thread, to the loop's thread."""

    def __init__(self) -> None:
        self._done: deque[Job] = deque()
        self._wake = WakePipe()

    def put(self, job: Job, result: Result) -> None:
        job.result = result
        self._done.append(job)
        self._wake.wake()

    def fileno(self) -> int:
        return self._wake.fileno()

    def __bool__(self) -> bool:
        return bool(self._done)

    def take(self) -> list[Job]:
        """Drain first, then take: a job put meanwhile writes a new wake-up byte."""
        self._wake.drain()
        done = self._done
        taken = []
        while done:
            taken.append(done.popleft())
        return taken

    def close(self) -> None:
        self._wake.close()
