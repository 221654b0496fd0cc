"""The per-item time limit and the soft memory limit.

``/proc``, the cgroup files and the clock are parameters, so the limit logic is tested with fake
files instead of real leaks.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from statusq.errors import ItemTimeLimitExceeded

log = logging.getLogger(__name__)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`ItemTimeLimitExceeded` in the body once ``seconds`` have passed.

    Uses SIGALRM, so it interrupts Python code but not a C call that never returns; the
    supervisor's hard kill covers that case.  Outside the main thread it cannot work and is off.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _expired(signum: int, frame: FrameType | None) -> None:
        raise ItemTimeLimitExceeded(f"handler ran past the time limit of {seconds:g}s")

    # An outer timer (another limit, a test runner's) is suspended and restored with the time
    # it had left, less what this block used.
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer_left:
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer_left - (time.monotonic() - started)))


class ItemTimer:
    """The per-item limit as the processor uses it, thousands of times a second.

    Same behaviour as :func:`time_limit`, but cheap: the SIGALRM handler is installed once per
    process (installing it per item cost more than a no-op handler), and while items flow the
    alarm is not re-armed per item.  An armed alarm is left running when an item ends; when it
    fires, the handler looks at the item in hand: past its limit, it is stopped; within it, the
    alarm is re-armed for the rest; no item, nothing.  Three timer system calls per item cost
    more than the rest of a no-op item's bookkeeping.  An outer timer that was already running
    (another limit, a test runner's) gets the exact behaviour instead: suspended, restored with
    the time it had left, and its alarms passed on to the handler that was there before.

    Each item may have its own limit (its transport's): ``with timer(seconds):`` sets it, one
    attribute store.  A pending alarm due after the new item's limit is brought forward.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._installed = False
        self._previous: Any = signal.SIG_DFL
        #: An item is in hand, and since when (monotonic).
        self._busy = False
        self._item_started = 0.0
        #: Our alarm is pending (the lazy mode), due then (monotonic).
        self._pending = False
        self._fires_at = 0.0
        #: The exact mode, under an outer timer: what it had left, and when we took over.
        self._exact = False
        self._outer_left = 0.0
        self._started = 0.0

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        if self._exact:
            if self._busy:
                self._busy = False
                raise ItemTimeLimitExceeded(f"handler ran past the time limit of {self.seconds:g}s")
        elif self._pending:
            self._pending = False
            if not self._busy:
                return
            left = self.seconds - (time.monotonic() - self._item_started)
            if left <= 0.001:
                self._busy = False
                raise ItemTimeLimitExceeded(f"handler ran past the time limit of {self.seconds:g}s")
            self._pending, self._fires_at = True, time.monotonic() + left
            signal.setitimer(signal.ITIMER_REAL, left)
            return
        if callable(self._previous):
            self._previous(signum, frame)

    def __call__(self, seconds: float) -> ItemTimer:
        """The limit of the item about to run; ``self``, for ``with``."""
        self.seconds = seconds
        return self

    def __enter__(self) -> None:
        seconds = self.seconds
        if seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        if not self._installed:
            self._previous = signal.signal(signal.SIGALRM, self._expired)
            self._installed = True
        self._item_started = started = time.monotonic()
        self._busy = True
        if self._pending:
            if self._fires_at <= started + seconds:
                return  # fires within `seconds` of this start; the handler re-arms for the rest
        else:
            outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
            if outer_left:
                self._exact, self._outer_left, self._started = True, outer_left, started
            else:
                self._pending = True
        self._fires_at = started + seconds
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def __exit__(self, *exc: object) -> None:
        self._busy = False
        if not self._exact:
            return
        self._exact = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        left = self._outer_left - (time.monotonic() - self._started)
        signal.setitimer(signal.ITIMER_REAL, max(0.001, left))


class MemoryProbe:
    """Reads this process's RSS and the hard bound a percentage limit is taken of."""

    def __init__(self, proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> None:
        self.proc = proc
        self.cgroup = cgroup

    def rss(self, pid: int | str = "self") -> int:
        """Resident set size in bytes (0 if it cannot be read: never a reason to restart)."""
        try:
            fields = (self.proc / str(pid) / "statm").read_text().split()
            return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0

    def hard_bound(self) -> int:
        """The cgroup's memory.max, else RLIMIT_AS, else physical memory."""
        try:
            text = (self.cgroup / "memory.max").read_text().strip()
            if text != "max":
                return int(text)
        except (OSError, ValueError):
            pass
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1):
            return soft
        try:
            for line in (self.proc / "meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_memory_limit(limit: int | str, probe: MemoryProbe) -> int:
    """Bytes for ``200MB``-style (already int) or ``50%``-style limits; 0 means no limit."""
    if isinstance(limit, str):
        return int(probe.hard_bound() * float(limit.rstrip("%")) / 100)
    return limit


class SoftMemoryLimit:
    def __init__(self, limit: int | str, probe: MemoryProbe | None = None) -> None:
        self.probe = probe or MemoryProbe()
        self.bytes = resolve_memory_limit(limit, self.probe)

    def exceeded(self) -> int | None:
        """The RSS when it is over the limit, else None."""
        if not self.bytes:
            return None
        rss = self.probe.rss()
        return rss if rss > self.bytes else None
