"""Process titles, so that ``ps``/``top`` show what each statusq process is doing.

``statusq supervisor [main]: 4 workers`` and ``statusq worker 2 [main]: handling distrib
site=example.org`` / ``idle``.  Setting a title is a memcpy into the process's argv area, cheap
enough to do around every item.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from statusq.item import Delivery
from statusq.middleware import Middleware
from statusq.outcome import Result

log = logging.getLogger(__name__)


def set_title(title: str) -> None:
    try:
        import setproctitle  # noqa: PLC0415 -- a C extension, loaded at the first title only
    except ImportError:  # a dependency, but a missing title must never stop a worker
        return
    setproctitle.setproctitle(title)


def groups_label(groups: Iterable[str] | None) -> str:
    return ",".join(sorted(groups)) if groups else "all"


def supervisor_title(groups: Iterable[str] | None, state: str) -> str:
    return f"statusq supervisor [{groups_label(groups)}]: {state}"


class ProcTitle(Middleware):
    """A worker's title, switched to "handling TRANSPORT site=SITE" for each item and back.

    While items flow, "idle" waits for :meth:`flush` (the worker's loop calls it when no next
    item came within a few milliseconds), and a title equal to the one shown is not set again:
    a flood of one site's items costs no ``setproctitle`` at all, where two per item cost a tenth
    of a no-op item's time.
    """

    def __init__(self, slot: int, groups: Iterable[str] | None, setter: Callable[[str], None] = set_title) -> None:
        self.prefix = f"statusq worker {slot} [{groups_label(groups)}]"
        self.setter = setter
        self._shown = ""
        #: The (transport, site) the title says is being handled, or None.
        self._handling: tuple[str, str] | None = None
        #: "idle" is due since then (monotonic), or None.
        self.dirty_since: float | None = None
        #: Items begun and not yet settled, and the title due at the next flush.
        self.in_hand = 0
        self._next = "idle"

    def show(self, state: str) -> None:
        self.dirty_since = None
        self._handling = None
        title = f"{self.prefix}: {state}"
        if title != self._shown:
            self.setter(title)
            self._shown = title

    def before_item(self, delivery: Delivery) -> None:
        self.in_hand += 1
        if self.in_hand > 1:  # several at once ([daemon] concurrency): the count, at the next flush
            self._later(f"handling {self.in_hand} items")
            return
        key = (delivery.transport, delivery.site)
        if key == self._handling:  # the title says so already
            self.dirty_since = None
            return
        self.show(f"handling {delivery.transport} site={delivery.site}")
        self._handling = key

    def after_item(self, delivery: Delivery, result: Result) -> None:
        self.in_hand -= 1
        if self.in_hand:
            self._later(f"handling {self.in_hand} item{'s' if self.in_hand > 1 else ''}")
            return
        self._next = "idle"
        self.dirty_since = time.monotonic()

    def _later(self, title: str) -> None:
        self._next = title
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    def flush(self) -> None:
        if self.dirty_since is not None:
            self.show(self._next)
