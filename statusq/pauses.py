"""Holding paused sites' and transports' items, in every worker, on every backend.

The processor asks :meth:`PauseGate.held` before anything else about a delivery: a paused item
is neither run nor dead-lettered, but handed back to its backend to be offered again
:data:`~statusq.defaults.PAUSE_HOLD` seconds later with its attempt *not* counted
(:meth:`statusq.queues.base.Consumer.defer`).  Because the check sits in the processor, not in a
backend's fetch, it works the same on SQLite, PostgreSQL, ActiveMQ, RabbitMQ and in memory.

The set of pauses is the shared store's (:mod:`statusq.queues.db.pauses`), re-read every
``recheck`` seconds and at once after a control message asked for it (:meth:`refresh`), so every
daemon on every host follows a pause within about that long.  A store that cannot be read keeps
the last set known: a database hiccup must neither release nor hold everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from statusq.defaults import PAUSE_HOLD, PAUSE_RECHECK
from statusq.errors import StatusqError
from statusq.queues.db.pauses import Pause

log = logging.getLogger(__name__)


class PauseGate:
    """The current pauses of one worker, read through ``load`` (``PauseStore.list``)."""

    def __init__(
        self,
        load: Callable[[], list[Pause]],
        *,
        recheck: float = PAUSE_RECHECK,
        hold: float = PAUSE_HOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.recheck = recheck
        self.hold = hold
        self.clock = clock
        self._sites: dict[str, Pause] = {}
        self._transports: dict[str, Pause] = {}
        self._due = 0.0  # read at the first item

    def refresh(self) -> None:
        """Read the store at the next item (a control message said the pauses changed)."""
        self._due = 0.0

    def read(self) -> None:
        """Read the store now: at a worker's boot, before it takes an item, so that opening the
        store (a connection, the table created if missing, other workers doing the same) is
        not paid by its first item while its prefetched ones wait behind it."""
        self._due = self.clock() + self.recheck
        self._read()

    def held(self, site: str, transport: str) -> Pause | None:
        """The pause that holds an item of ``site`` and ``transport``, or None to run it."""
        now = self.clock()
        if now >= self._due:
            self._due = now + self.recheck
            self._read()
        if not (self._sites or self._transports):
            return None
        return self._sites.get(site) or self._transports.get(transport)

    def _read(self) -> None:
        try:
            found = self.load()
        except StatusqError as exc:  # the database is down, or db_url is wrong
            log.warning("cannot read the pauses, keeping the %d known: %s", len(self.paused()), exc)
            return
        sites = {p.name: p for p in found if p.kind == "site"}
        transports = {p.name: p for p in found if p.kind == "transport"}
        if sites.keys() != self._sites.keys() or transports.keys() != self._transports.keys():
            log.info("pauses now: %s", ", ".join(p.describe() for p in found) or "none")
        self._sites, self._transports = sites, transports

    def paused(self) -> list[Pause]:
        return [*self._sites.values(), *self._transports.values()]
