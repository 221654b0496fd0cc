"""One lock between the supervisor's fork of a worker and its threads' use of a database.

A child forked while another thread of the supervisor held a lock of SQLite's, the driver's or
the pool's inherits it held, with no thread left to release it, and hangs at its first use of a
database (a worker was seen stuck for minutes after one item).  So every thread of the
supervisor that touches a database (the heartbeat, the ``/metrics`` sources, the web page's
requests) does it holding :data:`FORK_LOCK`, and :func:`statusq.daemon.processes.fork_worker`
forks holding it too.  Core, not the daemon's: the metrics and the web page sit below the daemon
in the layers and take it as well.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

FORK_LOCK = threading.Lock()
#: How long a fork waits for such a thread to let go; past it (a store that hangs) it forks anyway.
FORK_WAIT = 30.0


def fork_safe(read: Callable[[], T]) -> Callable[[], T]:
    """``read``, run holding :data:`FORK_LOCK` (a source a supervisor's thread reads from a database)."""

    def guarded() -> T:
        with FORK_LOCK:
            return read()

    return guarded
