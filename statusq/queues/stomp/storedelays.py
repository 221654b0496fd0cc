"""Where a delayed SEND waits: the broker's own way, or the shared store (``[queue.stomp] delays``).

The broker's way (:mod:`statusq.queues.stomp.delays`) costs nothing extra but, on ActiveMQ,
loses what comes due while the broker's store is full (:mod:`statusq.queues.db.delays` says
why).  So ``delays = "auto"`` (the default) holds delays in the shared store on ActiveMQ and in
RabbitMQ's holding queues on RabbitMQ (no such loss there: expiry moves a message inside the
broker, past any alarm); ``"store"`` and ``"broker"`` choose one for both.

A SEND to be held carries :data:`DUE` while it is being built (the routes of the consumer and the
producer put it there); :meth:`StoreDelays.place` takes it off and writes the row, or, if the
store cannot be written, falls back to the broker's way with a warning: better the broker's
small risk than an item refused or left unsettled.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from statusq.errors import StatusqError
from statusq.queues.stomp.delays import hold_route

if TYPE_CHECKING:
    from statusq.queues.db.delays import Delayed, DelayStore, DelaySummary

log = logging.getLogger(__name__)

#: On a SEND being built: the epoch second it is due, so it waits in the store.  Never on the wire.
DUE = "statusq-due"

#: A SEND: destination, body, headers.
Send = tuple[str, bytes, dict[str, str]]


class StoreDelays:
    """The choice, and the store it is held in (opened at the first delay), for one process's
    producer, consumers and relay.  ``earliest``: the soonest due time this process wrote, so its
    relay wakes for it without waiting for its next look (another process's rows are seen then)."""

    def __init__(self, mode: str, db_url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.mode = mode
        self.db_url = db_url
        self.clock = clock
        self.earliest = math.inf
        #: Set when a row of this process's comes due sooner than the relay knew (its thread waits on it).
        self.wake: threading.Event | None = None
        self._store: DelayStore | None = None
        self._opening = threading.Lock()

    def wanted(self, flavor: str | None) -> bool | None:
        """Whether delays wait in the store on a broker of ``flavor`` (None: not known yet)."""
        if self.mode != "auto":
            return self.mode == "store"
        return None if flavor is None else flavor == "activemq"

    def due(self, flavor: str | None, delay: float) -> dict[str, str] | None:
        """The header that holds a SEND ``delay`` seconds in the store, or None: the broker's way."""
        if delay <= 0 or not self.wanted(flavor):
            return None
        return {DUE: f"{math.ceil((self.clock() + delay) * 1000) / 1000:.3f}"}  # to the ms, never early

    def store(self) -> DelayStore:
        with self._opening:
            if self._store is None:
                from statusq.queues.db.delays import DelayStore  # noqa: PLC0415 - SQLAlchemy, only when used

                self._store = DelayStore.open(self.db_url)
            return self._store

    def hold(self, items: Sequence[Delayed]) -> None:
        """Write ``items``, committed on return; raises if the store cannot be opened or written."""
        if not items:
            return
        self.store().put(items)
        soonest = min(d.due_at for d in items)
        if soonest < self.earliest:
            self.earliest = soonest
            if self.wake is not None:
                self.wake.set()

    def place(self, flavor: str, sends: Sequence[Send], physical: Callable[[str], str]) -> list[Send]:
        """Hold the SENDs of ``sends`` that carry :data:`DUE`; what is left to send now: the others,
        and, if the store could not be written, the held ones routed the broker's way instead."""
        from statusq.queues.db.delays import Delayed  # noqa: PLC0415 - SQLAlchemy, only when used

        held = [(s, float(s[2][DUE])) for s in sends if DUE in s[2]]
        if not held:
            return list(sends)
        rest = [s for s in sends if DUE not in s[2]]
        items = [Delayed(d, body, {k: v for k, v in h.items() if k != DUE}, due) for (d, body, h), due in held]
        try:
            self.hold(items)
        except (StatusqError, OSError) as exc:  # a database error, or its file that cannot be made
            log.warning("%d delayed item(s) not held in the shared store, the broker holds them: %s", len(items), exc)
            now = self.clock()
            for item in items:
                destination, extra = hold_route(flavor, item.destination, item.due_at - now, physical)
                rest.append((destination, item.body, {**item.headers, **extra}))
        return rest

    def summary(self) -> DelaySummary | None:
        """What waits in the store (None: no table yet, nothing was ever held), for ``statusq status``:
        read only, no DDL."""
        from statusq.queues.db.delays import DelayStore  # noqa: PLC0415 - SQLAlchemy, only when used

        store = DelayStore.for_reading(self.db_url)
        if store is None:
            return None
        try:
            return store.summary(self.clock())
        finally:
            store.close()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
