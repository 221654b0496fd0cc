"""How a worker notices that its supervisor died: it finishes the item in hand and exits.

Two independent signs, because a worker left running without its supervisor has no hard time
limit, no respawn and no one to release its claims:

* the *lifeline*: a pipe whose only write end the supervisor holds.  Every worker watches the
  read end in its loop (an IoManager); when the supervisor dies, however, the kernel closes the
  write end and the read end reports EOF.
* ``PR_SET_PDEATHSIG`` (Linux): the kernel sends the worker SIGTERM when its parent dies, which
  the worker's handler turns into the same graceful stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import signal
import sys
from collections.abc import Callable

from statusq.io.manager import IoManager

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel for ``signum`` when the parent dies; False where prctl does not exist."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class Lifeline(IoManager):
    """Watches the read end of the supervisor's lifeline pipe; calls ``on_lost`` at EOF, once."""

    name = "lifeline"

    def __init__(self, fd: int, on_lost: Callable[[], None] | None = None) -> None:
        self.fd = fd
        self.on_lost = on_lost
        self.lost = False
        os.set_blocking(fd, False)

    def filenos(self) -> list[int]:
        return [] if self.lost else [self.fd]

    def timeout(self) -> float:
        return math.inf

    def poll(self) -> bool:
        try:
            data = os.read(self.fd, 64)
        except BlockingIOError:
            return False
        if data:
            return False  # nobody writes to it; ignore rather than guess
        self.lost = True
        log.warning("the supervisor is gone: finishing the item in hand, then exiting")
        if self.on_lost is not None:
            self.on_lost()
        return False

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
