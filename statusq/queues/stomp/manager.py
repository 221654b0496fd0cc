"""StompQueueManager: the production backend, on ActiveMQ or RabbitMQ's STOMP plugin.

The manager is the producer (one connection, opened on the first send); it builds each worker's
:class:`~statusq.queues.stomp.consumer.StompConsumer` and
:class:`~statusq.queues.stomp.control.StompControlChannel` (a connection each), and has a
:class:`~statusq.queues.stomp.admin.StompAdmin`.  Each is handed what it needs of the routing
(destinations, the delivery mode), not the manager.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from statusq.config import Config
from statusq.defaults import DEFAULT_GROUP
from statusq.errors import ConnectionClosed, InvalidArgument
from statusq.item import Message
from statusq.queues.base import Consumer, ControlChannel, QueueManager, Subscription
from statusq.queues.cancels import CancelStore
from statusq.queues.keys import UniqueKeys
from statusq.queues.stomp import wire
from statusq.queues.stomp.admin import StompAdmin
from statusq.queues.stomp.consumer import StompConsumer
from statusq.queues.stomp.control import StompControlChannel
from statusq.queues.stomp.delays import hold_route
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.hotfile import HotFile
from statusq.queues.stomp.link import Send, StompLink
from statusq.queues.stomp.storedelays import DUE, StoreDelays

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)


def _open_outbox(url: str) -> Engine:
    from statusq.queues.db.outbox import open_outbox  # noqa: PLC0415 - SQLAlchemy, only with an outbox

    return open_outbox(url)


class _Batch:
    """What the items of one ``enqueue_many`` share: their ids drawn at once, one enqueue time,
    each (transport, site)'s destination looked up once (per item, these were a third of the
    producer's CPU)."""

    def __init__(self, n: int, destination_of: Callable[[str, str], str]) -> None:
        self._ids = iter(wire.new_ids(n))
        self._at = f"{time.time():.6f}"
        self._destination_of = destination_of
        self._destinations: dict[tuple[str, str], str] = {}

    def next_id(self) -> tuple[str, str]:
        """A new item's id and enqueue time."""
        return next(self._ids), self._at

    def destination(self, transport: str, site: str) -> str:
        key = (transport, site)
        found = self._destinations.get(key)
        if found is None:
            found = self._destinations[key] = self._destination_of(transport, site)
        return found


class StompQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stomp = config.queue.stomp
        self.default_site = config.sites.default
        self.max_body = config.queue.max_body
        self.default_priorities = config.default_priorities()
        self.destinations = Destinations(self.stomp.basename, self.stomp.breakout, self.stomp.shards)
        self.outgoing = wire.delivery_mode(self.stomp.persistent)
        self._producer: StompLink | None = None
        #: The producer's link against its threads: the loop's (and handlers') enqueues, and the
        #: outbox relay's thread (statusq.io.outbox), one writer at a time, never two links.
        self._producing_lock = threading.RLock()
        # The application's database, its outbox table made now: SQLite could not make it later,
        # inside the application's own write transaction.
        self._outbox: Engine | None = _open_outbox(self.stomp.outbox_url) if self.stomp.outbox_url else None
        self._declared: set[str] = set()  # RabbitMQ queues this producer's connection made sure of
        #: Delays held in the shared store (ActiveMQ by default), for producer and consumers alike.
        self.delays = StoreDelays(self.stomp.delays, config.db_url)
        self._consumer_link: StompLink | None = None  # a worker's: tells the delay relay the broker's kind
        self.admin = StompAdmin(self.stomp, self.destination_of, self.outgoing, self._send_confirmed)

    # -- producing ----------------------------------------------------------------------------

    def destination_of(self, transport: str, site: str) -> str:
        """Routing comes from the config, never from the plugins: a producer imports none."""
        return self.destinations.for_item(self.config.group_of(transport), transport, site)

    def groups_for(self, subscription: Subscription) -> set[str]:
        if subscription.groups is not None:
            return set(subscription.groups)
        return {DEFAULT_GROUP} | {t.group for t in self.config.transports.values()}

    def _link(self) -> StompLink:
        if self._producer is None:
            self._producer = StompLink(self.stomp, "producer")
        # A batch refused by a full ActiveMQ after its wait gave up (no receipt in time): the
        # broker frees that transaction only with the connection (send_batch closes it itself
        # when the refusal comes in time)
        self._producer.release_refused_transaction()
        if not self._producer.connected:
            self._producer.connect()
            self._declared.clear()
        return self._producer

    def _producing(self, write: Callable[[StompLink], None]) -> None:
        """``write`` on the producer's link, with failover: on a dropped connection, reconnect
        (next server) and write once more.  What reached the broker just before the drop may so
        arrive twice, never zero times."""
        with self._producing_lock:
            for attempt in (1, 2):
                try:
                    write(self._link())
                    return
                except ConnectionClosed as exc:
                    if attempt == 2:
                        raise
                    log.warning("send failed, reconnecting: %s", exc)
                    if self._producer is not None:
                        self._producer.close()
                        self._producer = None

    def send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        confirm = self.stomp.confirm_sends
        self._producing(lambda link: link.send(destination, body, self.outgoing(headers), confirm=confirm))

    def _send_confirmed(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """As it is, confirmed by a receipt (control commands)."""
        with self._producing_lock:
            self._link().send(destination, body, headers, confirm=True)

    def _wire(self, message: Message, link: StompLink, batch: _Batch | None = None) -> Send:
        """Destination, body and headers of ``message``; a delay held as the broker holds a
        retry's (``delays.hold_route``: ActiveMQ's scheduler, RabbitMQ's holding queues).
        ``batch``: what the items of one ``enqueue_many`` share, made once for all of them."""
        headers = message.headers
        if headers and any(k.startswith("statusq-") or k in wire.BROKER_HEADERS for k in headers):
            raise InvalidArgument("headers", "may not set statusq-* or broker headers")
        if batch is None:
            new = wire.new_headers(message.site, message.transport, message.content_type)
            destination = self.destination_of(message.transport, message.site)
        else:
            new = wire.new_headers(message.site, message.transport, message.content_type, *batch.next_id())
            destination = batch.destination(message.transport, message.site)
        out = {**headers, **new} if headers else new
        if message.id:  # relayed from the outbox: the id enqueue returned
            out[wire.ID] = message.id
        out["priority"] = str(message.priority)
        if message.expires_at is not None:
            out[wire.EXPIRES] = f"{message.expires_at:.3f}"
        if message.delay > 0:
            out[wire.ETA] = f"{time.time() + message.delay:.3f}"
            due = self.delays.due(link.flavor, message.delay)
            if due is None:
                destination, due = hold_route(link.flavor, destination, message.delay, link.physical)
            out.update(due)
        return destination, message.body, self.outgoing(out)

    def _declare_targets(self, link: StompLink, messages: list[Message]) -> None:
        """RabbitMQ drops what a holding queue passes on to a queue that does not exist yet (a
        delayed item enqueued before any worker ever subscribed): have it declare the delayed
        items' queues first, once per connection, with a SEND that expires at once, unread (a
        worker that gets it all the same acks it unseen)."""
        if link.flavor != "rabbitmq":
            return
        if self.delays.wanted(link.flavor):
            return  # a delayed item waits in the shared store, and is sent to its own queue when due
        targets = {self.destination_of(m.transport, m.site) for m in messages if m.delay > 0} - self._declared
        for destination in sorted(targets):
            link.send(destination, b"", self.outgoing({wire.DECLARE: "1", "expiration": "0"}), confirm=False)
            self._declared.add(destination)

    def _wire_all(self, messages: list[Message], link: StompLink) -> list[Send]:
        batch = _Batch(len(messages), self.destination_of)
        sends = []
        for index, message in enumerate(messages):
            try:
                sends.append(self._wire(message, link, batch))
            except InvalidArgument as exc:
                raise exc.at(index) from None
        return sends

    def _put(self, message: Message) -> str:
        confirm = self.stomp.confirm_sends
        sent: list[Send] = []  # made once: a send again after a failover keeps the item's id

        def write(link: StompLink) -> None:
            if not sent:
                sent.append(self._wire(message, link))
            if DUE in sent[0][2]:
                return  # held in the shared store, below
            self._declare_targets(link, [message])
            link.send(*sent[0], confirm=confirm)

        self._producing(write)
        self._hold_delayed(sent)
        return sent[0][2][wire.ID]

    def _put_many(self, messages: list[Message]) -> list[str]:
        """One transaction: BEGIN, the SENDs, COMMIT, confirmed by the COMMIT's receipt (on
        RabbitMQ by every SEND's too: its COMMIT receipt says routed, not stored).  Delayed items
        held in the shared store are written there after it, in a transaction of the store's: the
        two do not commit as one (a failed write of the store's falls back to the broker's way)."""
        sends: list[Send] = []  # made once, as in _put

        def write(link: StompLink) -> None:
            if not sends:
                sends.extend(self._wire_all(messages, link))
            self._declare_targets(link, messages)
            now = [send for send in sends if DUE not in send[2]]
            if now:
                link.send_batch(now, confirm_each=link.flavor == "rabbitmq")

        self._producing(write)
        self._hold_delayed(sends)
        return [headers[wire.ID] for _, _, headers in sends]

    def _hold_delayed(self, sends: list[Send]) -> None:
        """The SENDs of ``sends`` marked to wait in the shared store, written there once the
        others are on the broker (not inside the failover's retried write: twice there would be
        two rows); those the store would not take go the broker's way."""
        delayed = [send for send in sends if DUE in send[2]]
        if not delayed:
            return
        with self._producing_lock:
            link = self._link()
        rest = self.delays.place(link.flavor, delayed, link.physical)
        if rest:
            self._producing(lambda link: link.send_batch(rest, confirm_each=link.flavor == "rabbitmq"))

    def flavor(self) -> str | None:
        """The broker's kind, once a connection of this process's has told it (None: not yet)."""
        if self.stomp.flavor != "auto":
            return self.stomp.flavor
        for link in (self._producer, self._consumer_link):
            if link is not None and link.connected:
                return link.flavor
        return None

    # -- a worker's parts ---------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> Consumer:
        consumer = StompConsumer(
            self.stomp,
            self.destinations.for_groups(self.groups_for(subscription)),
            self.destinations,
            default_site=self.default_site,
            outgoing=self.outgoing,
            ack_flush=self.config.queue.ack_flush,
            prefetch=self.config.prefetch,
            hot_file=HotFile(Path(self.config.var_dir) / "hot-sites"),
            delays=self.delays,
        )
        self._consumer_link = consumer.link
        long = frozenset(name for name, t in self.config.transports.items() if t.long)
        if not long:
            return consumer
        # Local: SQLAlchemy, only in a worker that serves a long transport.
        from statusq.queues.db.longitems import LongItemStore  # noqa: PLC0415
        from statusq.queues.stomp.longjobs import LongJobs  # noqa: PLC0415

        url = self.config.db_url
        return LongJobs(consumer, long, lambda: LongItemStore.open(url), self.stomp, self.config.queue.long_lease)

    def control_channel(self) -> ControlChannel | None:
        if not self.stomp.control_channel:
            return None
        return StompControlChannel(self.stomp, self.stomp.control_channel)

    def _open_keys(self) -> UniqueKeys:
        # The broker cannot look into its queues: keys live in [queue] db_url (PostgreSQL when
        # several hosts share the broker).  SQLAlchemy is imported only for a keyed enqueue.
        from statusq.queues.db.keys import SqlKeys  # noqa: PLC0415 - heavy, and rarely needed here

        return SqlKeys(self.config.db_url)

    def _put_in(self, messages: list[Message], connection: Any) -> list[str]:
        """Into the outbox, in the application's transaction; a worker relays it after the commit."""
        from statusq.queues.db import outbox  # noqa: PLC0415 - SQLAlchemy, only with an outbox

        outbox.check_url(self.stomp.outbox_url)
        assert self._outbox is not None  # opened with the manager
        return outbox.write(self._outbox, connection, messages)

    def relay_batch(self, messages: list[Message]) -> None:
        """Send outbox rows as they were enqueued (ids kept), in one confirmed transaction."""
        self._put_many(messages)

    def _open_cancels(self) -> CancelStore:
        # A broker cannot delete one message: every cancellation is remembered, in db_url.
        from statusq.queues.db.cancels import SqlCancels  # noqa: PLC0415 - heavy, and rarely needed here

        return SqlCancels(self.config.db_url)

    def close(self) -> None:
        self.close_keys()
        self.delays.close()
        if self._outbox is not None:
            self._outbox.dispose()
            self._outbox = None
        if self._producer is not None:
            self._producer.close()
            self._producer = None
