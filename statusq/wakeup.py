"""A self-pipe that wakes a ``select()`` from another thread or a signal handler.

Why a class: four loops had their own copy, and each could write its byte after its owner had
closed the pipe (a broker's receiver thread reporting a disconnect, a signal arriving as the
loop ended).  A closed descriptor's number is soon reused by the next file or socket the process
opens, so that late byte could land in it: once a stray ``x`` opened a CLI's JSON output.  Here
neither a write nor a read follows :meth:`close`.
"""

from __future__ import annotations

import contextlib
import os
import threading


class WakePipe:
    """One byte per wake-up, not per event (each system call hands the GIL to the other thread),
    until :meth:`drain` has read it; nothing is written once :meth:`close` began."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.pending = False
        # Reentrant: a signal handler may wake the loop of the thread that is closing the pipe.
        self._lock = threading.RLock()
        self._closed = False

    def fileno(self) -> int:
        return self._read

    def wake(self) -> None:
        if self.pending:
            return
        self.pending = True
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):  # a full pipe is readable anyway
                    os.write(self._write, b"x")

    def drain(self) -> None:
        """Read the pipe empty, then allow the next byte.  In this order: a wake-up that came
        during the read and found ``pending`` still set wrote nothing, and its event is seen by
        the owner, who looks for events after draining; cleared before the read, the byte of a
        wake-up during the read was read here and ``pending`` stayed set on an empty pipe, so no
        later wake-up wrote one (a worker with items in hand slept through its completions)."""
        if not self._closed:  # else the number may be another file's by now (the owner closes it)
            with contextlib.suppress(OSError):
                while os.read(self._read, 4096):
                    pass
        self.pending = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._read, self._write):
                with contextlib.suppress(OSError):
                    os.close(fd)
