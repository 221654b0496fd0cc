"""The relay of delayed items from the shared store to the broker when due (statusq.queues.db.delays).

Every worker on a broker runs one while delays wait in the store (``[queue.stomp] delays``), on a
thread and a broker connection of its own: a relay that waits on a full broker (a store wait, a
refusal after ``receipt_timeout``) must not stop the worker's loop from draining the backlog that
makes room.  It wakes at the earliest due time it knows of (its own process's rows at once,
another's at its next look, every ``delay_poll``) and sends what is due in one confirmed
transaction.  A refusal or a lost connection leaves the rows: the connection is dropped (a
transaction ActiveMQ marked rollback-only, or one stuck in a store wait, goes with it) and the
next try, after a backoff, sends one row only, until the broker takes one again: a try whose
outcome stays unknown (no receipt) may still land, so at most one row per such try runs twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from statusq.config import StompConfig
from statusq.errors import StatusqError
from statusq.io.relaythread import RelayThread
from statusq.queues.db.delays import BATCH, Delayed
from statusq.queues.stomp import wire
from statusq.queues.stomp.link import StompLink
from statusq.queues.stomp.storedelays import StoreDelays

log = logging.getLogger(__name__)

FIRST_BACKOFF = 0.5  # after a failed relay; doubled on each failure in a row
MOST_BACKOFF = 10.0
#: --idle-exit waits for rows due within this long (or due and not yet taken by the broker).
BUSY_WITHIN = 10.0


class DelayRelaying:
    """What the relay's thread does at each look, apart from the thread (tested with a fake clock
    and a fake ``send``).  ``flavor``: the broker's kind once known (None: not yet), for
    ``delays = "auto"``: on RabbitMQ the relay turns itself off."""

    def __init__(
        self,
        delays: StoreDelays,
        send: Callable[[list[Delayed]], object],
        flavor: Callable[[], str | None],
        every: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.delays = delays
        self.send = send
        self.flavor = flavor
        self.every = every
        self.clock = clock
        self.next_look = 0.0  # epoch seconds
        self.next_due: float | None = None  # the earliest row the last look saw
        self.backoff = 0.0  # while relays fail: the wait before the next (one row at a time)
        self.off = False
        self.sent = 0  # in all: the loop's idle clock is reset when it grows

    def wait(self) -> float:
        """Seconds until the next look (inf: never again)."""
        if self.off:
            return math.inf
        return max(0.0, min(self.next_look, self.delays.earliest) - self.clock())

    def busy(self) -> bool:
        if self.off:
            return False
        due = min(self.next_due if self.next_due is not None else math.inf, self.delays.earliest)
        return due <= self.clock() + BUSY_WITHIN

    def look(self) -> int:
        """Relay what is due, if it is time; how many rows went to the broker."""
        now = self.clock()
        if self.off or now < min(self.next_look, self.delays.earliest):
            return 0
        wanted = self.delays.wanted(self.flavor())
        if wanted is None:  # not connected yet: the broker's kind is not known
            self.next_look = now + self.every
            return 0
        if not wanted:
            self.off = True
            log.debug("delays wait on the broker: no relay")
            return 0
        self.delays.earliest = math.inf  # before the look: a row written from now on sets it again
        try:
            sent = self._relay(now)
        except StatusqError as exc:
            self._failed(now, exc)
            return 0
        if self.backoff:
            log.warning("the broker takes delayed items again")
            self.backoff = 0.0
        if sent:
            log.info("relayed %d delayed item(s) from the shared store", sent)
            self.sent += sent
        return sent

    def _relay(self, now: float) -> int:
        store = self.delays.store()
        self.next_due = store.next_due()
        sent = 0
        if self.next_due is not None and self.next_due <= now:
            batch = 1 if self.backoff else BATCH
            sent = store.relay(self.send, now, batch)
            if sent == 0:  # due, but claimed by another relay sending them now: look again later
                self.next_look = now + self.every
                return 0
            self.next_due = now if sent == batch else store.next_due()
        self.next_look = min(now + self.every, self.next_due if self.next_due is not None else math.inf)
        return sent

    def _failed(self, now: float, exc: StatusqError) -> None:
        if not self.backoff:
            log.warning("delayed items not relayed (kept in the shared store, tried again, a row at a time): %s", exc)
        self.backoff = min(MOST_BACKOFF, self.backoff * 2 if self.backoff else FIRST_BACKOFF)
        self.next_look = now + self.backoff
        if self.next_due is None:
            self.next_due = now
        self.delays.earliest = math.inf  # the rows are due already: the backoff decides


class DelayRelay(RelayThread):
    """The relay's thread and connection, as one of the worker loop's managers (telling its idle
    clock, ``--idle-exit``, about rows due soon)."""

    name = "delays"

    def __init__(self, delays: StoreDelays, stomp: StompConfig, every: float, flavor: Callable[[], str | None]) -> None:
        super().__init__("delay-relay", stomp.receipt_timeout + 1)
        self.link = StompLink(stomp, "delay relay")  # connected at the first row due, not before
        self.relaying = DelayRelaying(delays, self._send, flavor, every)
        delays.wake = self._wake

    def _send(self, items: list[Delayed]) -> None:
        sends = [(item.destination, item.body, {**item.headers, wire.RELAYED: "1"}) for item in items]
        try:
            if not self.link.connected:
                self.link.connect()
            self.link.send_batch(sends, confirm_each=self.link.flavor == "rabbitmq")
        except StatusqError:
            self.link.close()  # with it whatever the broker still holds of that transaction
            raise

    def look(self) -> float | None:
        self.moved(self.relaying.look())
        if self.relaying.off:
            self.link.close()
            return None
        return self.relaying.wait()

    def busy(self) -> bool:
        return self.relaying.busy()

    def stop(self) -> None:
        super().stop()
        self.link.close()
        self.relaying.delays.close()
