"""A thread that calls something every few seconds, whatever the worker's loop is doing.

Leases (a concurrency slot, a long item held in the shared store) must be renewed while the
loop's thread is inside a handler for as long as the item runs; so a thread of their own does it,
and never dies of a failure: a dead renewer would let the leases run out under running items.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from statusq.errors import StatusqError

log = logging.getLogger(__name__)


class Ticker(threading.Thread):
    """Calls each of ``steps`` every ``every`` seconds until :meth:`stop`; a step that raises is
    logged (a StatusqError as a warning: a store that is down, said plainly) and the next goes on."""

    def __init__(self, name: str, every: float, *steps: Callable[[], object]) -> None:
        super().__init__(name=name, daemon=True)
        self.every = every
        self.steps = steps
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.every):
            for step in self.steps:
                what = getattr(step, "__qualname__", repr(step))
                try:
                    step()
                except StatusqError as exc:
                    log.warning("%s: %s failed: %s", self.name, what, exc)
                except Exception:
                    log.exception("%s: %s failed", self.name, what)

    def stop(self) -> None:
        self._halt.set()
