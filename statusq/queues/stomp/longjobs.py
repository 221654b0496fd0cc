"""Long transports on a broker: each item taken off the broker before its handler starts.

A broker takes back a message left unacknowledged past its consumer timeout (RabbitMQ's
``consumer_timeout``, 30 minutes by default, closes the whole channel: every item the worker
held comes back), so a handler that runs longer would run again while it runs.  For a transport
marked ``[transports.NAME] long = true``, :class:`LongJobs` (around the worker's consumer)
writes the item to the shared store (:mod:`statusq.queues.db.longitems`), then acks the
broker's copy, then hands it to the handler; while it runs a thread renews its lease; its
outcome (a retry, a dead letter) is sent to the broker as a new message, confirmed, and only
then is the row deleted.  A worker killed meanwhile renews nothing: once the lease has run out,
any worker's thread sends the row back to the broker as the next attempt.  At least once, as
for every item; the duplicates are the same as a killed worker's (the item that was running).

If the store cannot be written, the item runs the ordinary way (held on the broker), with a
warning: better a possible redelivery than no run.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from statusq.config import StompConfig
from statusq.errors import QueueError
from statusq.item import Delivery
from statusq.queues.base import Consumer
from statusq.queues.db.longitems import LongItem, LongItemStore
from statusq.queues.stomp import wire
from statusq.queues.stomp.consumer import StompConsumer
from statusq.queues.stomp.link import StompLink
from statusq.ticker import Ticker

log = logging.getLogger(__name__)

LOST = "its worker was lost while it ran (a long item, sent back from the shared store)"


class LongJobs(Consumer):
    """The worker's consumer, with the items of ``transports`` held in the store while they run."""

    def __init__(
        self,
        inner: StompConsumer,
        transports: frozenset[str],
        store: Callable[[], LongItemStore],
        stomp: StompConfig,
        lease: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inner = inner
        inner.guard_fetch()  # the keeper's give_back_waiting against the loop's fetch
        self.transports = transports
        self.open_store = store
        self.lease = lease
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._store: LongItemStore | None = None
        self._opening = threading.Lock()  # the loop's first fetch and the keeper's first sweep
        self._link = StompLink(stomp, "long-jobs")
        self._send_lock = threading.Lock()  # the loop's settlements and the keeper's sweeps
        self._held: dict[int, str] = {}  # id(delivery) -> its row's key
        self._keeper = Ticker("statusq-long-jobs", lease / 3, self.renew, self.sweep)
        self._keeper.start()

    def store(self) -> LongItemStore:
        with self._opening:
            if self._store is None:
                self._store = self.open_store()
            return self._store

    # -- delivery ---------------------------------------------------------------------------

    def filenos(self) -> list[int]:
        return self.inner.filenos()

    def drain_wakeups(self) -> None:
        self.inner.drain_wakeups()

    def fetch(self) -> Delivery | None:
        delivery = self.inner.fetch()
        if delivery is None or delivery.redelivered or delivery.transport not in self.transports:
            return delivery
        token = delivery.token
        assert isinstance(token, wire.FrameToken)
        key = f"{delivery.id}:{uuid.uuid4().hex[:16]}"
        item = LongItem(key, token.destination, wire.copy_headers(delivery, token), delivery.body)
        try:
            self.store().put(item, self.owner, self.clock() + self.lease)
        except QueueError as exc:
            log.warning(
                "id=%s: cannot hold the long item in the shared store, run from the broker: %s", delivery.id, exc
            )
            return delivery
        self.inner.ack(delivery)  # only now: the store has it
        self.inner.writer.hurry()  # and at once: until the ack is out, a kill would make two copies
        self._held[id(delivery)] = key
        return delivery

    def _settled(self, delivery: Delivery) -> str | None:
        """The row of a long delivery being settled (None: an ordinary one)."""
        return self._held.pop(id(delivery), None)

    def ack(self, delivery: Delivery) -> None:
        key = self._settled(delivery)
        if key is None:
            self.inner.ack(delivery)
        else:
            self._forget(key)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        key = self._settled(delivery)
        if key is None:
            self.inner.retry(delivery, delay, error)
        else:
            self._replace(key, delivery, *self.inner.retry_message(delivery, delay, error))

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        key = self._settled(delivery)
        if key is None:
            self.inner.defer(delivery, delay, reason)
        else:
            self._replace(key, delivery, *self.inner.defer_message(delivery, delay))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        key = self._settled(delivery)
        if key is None:
            self.inner.dead_letter(delivery, reason)
        else:
            self._replace(key, delivery, *self.inner.dead_letter_message(delivery, reason))

    def _replace(self, key: str, delivery: Delivery, destination: str, headers: dict[str, str]) -> None:
        """The outcome on the broker, confirmed, then the row gone.  Not sent: the row stays, and
        is sent back as a lost item once its lease (no longer renewed) runs out."""
        try:
            self._send(destination, delivery.body, headers)
        except QueueError as exc:
            log.error("id=%s: outcome not sent (%s): the item goes back when its lease ends", delivery.id, exc)
            return
        self._forget(key)

    def _forget(self, key: str) -> None:
        try:
            self.store().delete(key)
        except QueueError as exc:  # the row expires, and the item runs once more: never lost
            log.error("cannot delete the long item %s from the shared store (it will run again): %s", key, exc)

    def _send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """Confirmed on the broker, or, a delayed outcome (a retry), committed in the shared store."""
        with self._send_lock:
            for to, what, how in self.inner.place([(destination, body, headers)]):
                if not self._link.connected:
                    self._link.connect()
                self._link.send(to, what, how, confirm=True)

    # -- the keeper's thread ----------------------------------------------------------------

    def renew(self) -> None:
        """Push back the lease of the items this worker runs, and hand back what waits behind
        them: it would wait as long, unacked, and the broker's consumer timeout would take back
        everything this worker holds."""
        keys = list(self._held.values())
        if keys:
            self.store().renew(keys, self.clock() + self.lease)
            self.inner.give_back_waiting(self.lease / 3)

    def sweep(self) -> int:
        """Send back the items whose worker stopped renewing them; how many."""
        now = self.clock()
        sent = 0
        for item, owner in self.store().expired(now):
            if not self.store().reclaim(item.key, owner, now, self.owner, now + self.lease):
                continue  # another worker took it, or its owner renewed after all
            attempt = int(wire.float_or(item.headers.get(wire.ATTEMPT), 1)) + 1
            headers = {**item.headers, wire.ATTEMPT: str(attempt), wire.ERROR: LOST}
            self._send(item.destination, item.body, self.inner.outgoing(headers))
            self.store().delete(item.key)
            log.warning("id=%s: its worker was lost while it ran: sent back as attempt %d", item.key, attempt)
            sent += 1
        return sent

    # -- the rest ---------------------------------------------------------------------------

    @property
    def claim_owner(self) -> str | None:
        return self.inner.claim_owner

    def reachable(self) -> bool:
        return self.inner.reachable()

    def release(self) -> None:
        self.inner.release()

    def close(self) -> None:
        self._keeper.stop()
        self.inner.close()
        self._link.close()
        if self._store is not None:
            self._store.close()
