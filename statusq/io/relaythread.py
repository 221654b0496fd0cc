"""A relay's work on a thread of its own, as one of the worker loop's managers.

A relay (the delayed items', the transactional outbox's) sends to the broker and waits for its
receipt; a full broker answers late or not at all (a store wait, a refusal after
``receipt_timeout``).  Inside the loop that wait stopped the worker draining the very backlog
whose draining makes room (seen: 20 s a try).  So the loop only starts and stops the thread,
and learns from it whether anything moved (its ``--idle-exit`` clock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from statusq.io.manager import IoManager

log = logging.getLogger(__name__)

#: The longest wait between two looks, whatever a look said, and after a look that raised.
MOST_WAIT = 10.0


class RelayThread(IoManager):
    """Subclasses say what one look does (:meth:`look`), and call :meth:`moved`."""

    def __init__(self, name: str, join_timeout: float) -> None:
        self.join_timeout = join_timeout
        self._halt = threading.Event()
        self._wake = threading.Event()
        self._moved = self._seen = 0
        #: The loop's: once its process is stopping, the thread relays nothing more (what it sent
        #: could land in this worker's own prefetch window as it closes, come back redelivered and
        #: be charged an attempt it never ran); the rows wait for another worker.
        self.stopping: Callable[[], bool] = lambda: False
        self._thread = threading.Thread(target=self._run, name=f"statusq-{name}", daemon=True)

    def look(self) -> float | None:
        """One look; seconds until the next (None: never again, the thread ends)."""
        raise NotImplementedError

    def moved(self, count: int) -> None:
        """``count`` items went to the broker: the loop's idle clock starts again."""
        self._moved += count

    def wake(self) -> None:
        """Look now, not at the time the last look said."""
        self._wake.set()

    def _run(self) -> None:
        while not self._halt.is_set():
            if self.stopping():
                return
            try:
                wait = self.look()
            except Exception:  # a thread that died would leave its rows waiting for good
                log.exception("%s: a look failed", self.name)
                wait = MOST_WAIT
            if wait is None:
                return
            self._wake.wait(min(wait, MOST_WAIT))
            self._wake.clear()

    def start(self) -> None:
        self._thread.start()

    def timeout(self) -> float:
        return 1.0  # the loop looks now and then whether the thread moved anything

    def poll(self) -> bool:
        moved, self._seen = self._moved != self._seen, self._moved
        return moved

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.join_timeout)
