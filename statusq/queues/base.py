"""The QueueManager interface: what every backend (database, STOMP broker, memory) provides.

Per backend, three parts around one low-level link (an engine, a STOMP connection, a
:class:`~statusq.queues.memory.MemoryBroker`):

- the producer: :meth:`QueueManager.enqueue`, the same checks and hooks for every backend;
- a :class:`Consumer` per worker (:meth:`QueueManager.subscribe`): delivery only, each delivery
  settled exactly one way: ack, retry later, or dead-letter.  Control commands come apart from
  items, through a :class:`ControlChannel` (:meth:`QueueManager.control_channel`);
- an :class:`Admin` (:attr:`QueueManager.admin`) for operators, which declares what it can do:
  what a backend cannot count cheaply is reported as unknown (None), never by draining a queue.

Retry *policy* lives in the processor, not here, so every backend counts attempts and backs off
the same way.  The worker's side (:class:`Subscription`, :class:`Consumer`, :class:`ControlChannel`)
is in :mod:`statusq.queues.consumer`, the operator's in :mod:`statusq.queues.admin`; both are
re-exported here.
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from statusq.commands import parse_command
from statusq.defaults import DEFAULT_SITE, MAX_BATCH
from statusq.errors import InvalidArgument, StatusqError, Unsupported
from statusq.item import Item, Message
from statusq.middleware import MiddlewareChain
from statusq.produce import prepare, prepare_batch
from statusq.queues import keyed

# Re-exported: the operator's side lives in statusq.queues.admin; backends import it from here.
from statusq.queues.admin import Admin, BacklogRow, Capability, DeadLetter
from statusq.queues.cancels import Cancelled, CancelStore, Purged, cancel_items, purge_items

# Re-exported: the worker's side lives in statusq.queues.consumer; backends import it from here.
from statusq.queues.consumer import Consumer, ControlChannel, ControlMessage, Subscription
from statusq.queues.keys import UniqueKeys

__all__ = [
    "Admin",
    "BacklogRow",
    "Capability",
    "Consumer",
    "ControlChannel",
    "ControlMessage",
    "DeadLetter",
    "QueueManager",
    "Subscription",
]

if TYPE_CHECKING:
    from statusq.queues.db.pauses import Pause, PauseStore
    from statusq.queues.db.removals import RemovalStore

log = logging.getLogger(__name__)


def _no_keys_in_transactions(messages: list[Message]) -> None:
    if any(message.key is not None for message in messages):
        # The keys' reservation commits on its own: it would outlive a rolled-back transaction.
        raise InvalidArgument("key", "cannot be combined with connection= (the keys are not in your transaction)")


class QueueManager(abc.ABC):
    """A backend.  :meth:`enqueue` is the same for all of them (check, encode, middleware); a
    backend implements only :meth:`_put`, so no backend can forget a check or a hook."""

    #: The site of an item enqueued without one; backends built from a config set its own.
    default_site: str = DEFAULT_SITE
    #: Told of every enqueue through this manager (see :meth:`use_middleware`).
    _middleware: MiddlewareChain | None = None
    #: ``[transports.NAME] priority``: an item enqueued without a priority gets its transport's
    #: (backends built from a config set it from :meth:`Config.default_priorities`).
    default_priorities: Mapping[str, int] = MappingProxyType({})

    #: ``[queue] max_body``: a larger body is refused at enqueue (0: no limit).
    max_body: int = 0

    #: The clock ``delay``, ``eta`` and ``expires`` are read against (the memory broker's own).
    clock: Callable[[], float] = staticmethod(time.time)

    def enqueue(
        self,
        payload: Any,
        transport: str,
        site: str | None = None,
        headers: dict[str, str] | None = None,
        priority: int | None = None,
        content_type: str | None = None,
        *,
        delay: float | str | timedelta | None = None,
        eta: datetime | None = None,
        expires: float | str | timedelta | datetime | None = None,
        key: str | None = None,
        unique_for: float | str | timedelta | None = None,
        rate_key: str | None = None,
        connection: Any = None,
    ) -> str:
        """Queue one item; returns its id.  ``delay`` (seconds, ``"5m"``) or ``eta`` (an aware
        datetime): not before then; ``expires`` (seconds, a duration or an aware datetime): not
        run after then, but dead-lettered as expired; ``key``: while an item with this key is
        pending, or succeeded within ``unique_for``, nothing is added and that item's id is
        returned (see statusq.queues.keys); ``rate_key``: the bucket of the transport's
        ``key_rate_limit`` (docs/flow-control.md) this item counts against; ``connection``
        (database backend): an SQLAlchemy or DB-API connection to the queue's database, whose
        transaction the item is written in, committed or rolled back with it.  A bad argument raises
        :class:`~statusq.errors.InvalidArgument` (a :class:`DataError`) and enqueues nothing."""
        item = Item(
            payload, transport, site, delay, eta, expires, headers, priority, content_type, key, unique_for, rate_key
        )
        message = prepare(item, self.default_site, self.clock(), self.default_priorities)
        self._check_size([message])
        if connection is not None:
            _no_keys_in_transactions([message])
        middleware = self._middleware
        if middleware is not None:
            middleware.before_enqueue(message)
        if connection is not None:
            message.id = self._put_in([message], connection)[0]
        elif message.key is None:
            message.id = self._put(message)
        else:
            message.id, added = keyed.put_one(self.unique_keys, self._put, message, self.clock())
            if not added:
                return message.id  # the key's live item: nothing was enqueued
        self._put_done([message.id])
        if middleware is not None:
            middleware.after_enqueue(message)
        return message.id

    def enqueue_many(self, items: Iterable[Item], *, connection: Any = None) -> list[str]:
        """Queue a batch of :class:`~statusq.Item` in one broker or database transaction, all or
        nothing; returns their ids in order.  Every item is checked, and every middleware's
        ``before_enqueue`` has run on it (a refusal refuses the batch), before anything is sent."""
        messages = prepare_batch(items, self.default_site, self.clock(), MAX_BATCH, self.default_priorities)
        self._check_size(messages)
        if connection is not None:
            _no_keys_in_transactions(messages)
        middleware = self._middleware
        if middleware is not None:
            for message in messages:
                middleware.before_enqueue(message)
        if connection is not None:
            ids, added = self._put_in(messages, connection), [True] * len(messages)
        elif any(message.key is not None for message in messages):
            ids, added = keyed.put_many(self.unique_keys, self._put_many, messages, self.clock())
        else:
            ids, added = self._put_many(messages), [True] * len(messages)
        for message, item_id in zip(messages, ids, strict=True):
            message.id = item_id
        self._put_done([item_id for item_id, new in zip(ids, added, strict=True) if new])
        if middleware is not None:
            for message, new in zip(messages, added, strict=True):
                if new:
                    middleware.after_enqueue(message)
        return ids

    def _check_size(self, messages: list[Message]) -> None:
        for index, message in enumerate(messages):
            if self.max_body and len(message.body) > self.max_body:
                error = InvalidArgument(
                    "payload", f"{len(message.body):,} bytes; [queue] max_body is {self.max_body:,}"
                )
                raise error.at(index) if len(messages) > 1 else error

    #: Opened on the first keyed enqueue (see :meth:`_open_keys`).
    _keys: UniqueKeys | None = None

    @property
    def unique_keys(self) -> UniqueKeys:
        """Where this backend's unique keys live; opened on first use, so an application that
        never enqueues with a key never touches the store."""
        if self._keys is None:
            self._keys = self._open_keys()
        return self._keys

    def _open_keys(self) -> UniqueKeys:
        raise Unsupported(f"{type(self).__name__} cannot keep unique keys")

    _cancels: CancelStore | None = None

    @property
    def cancel_store(self) -> CancelStore:
        """Where cancellations the backend could not carry out at once are remembered."""
        if self._cancels is None:
            self._cancels = self._open_cancels()
        return self._cancels

    def _open_cancels(self) -> CancelStore:
        raise Unsupported(f"{type(self).__name__} cannot cancel items")

    def cancel(self, ids: Iterable[str], reason: str = "by an operator") -> Cancelled:
        """Cancel items by id: deleted if queued and the backend can; else (in hand, or on a
        broker that cannot delete one message) remembered, and dropped unrun when they arrive.
        An id the backend knows it does not hold is in neither list."""
        return cancel_items(ids, reason, self._remove, lambda: self.cancel_store)

    def purge(self, site: str | None = None, transport: str | None = None, reason: str = "by an operator") -> Purged:
        """Drop every item of ``site`` and/or ``transport`` enqueued until now: deleted where the
        backend can, the rest (in hand, or on a broker) dropped unrun when they arrive."""
        return purge_items(site, transport, reason, self.clock(), self._remove_matching, lambda: self.cancel_store)

    def _remove(self, ids: list[str]) -> tuple[set[str], set[str] | None]:
        """Delete the queued items of ``ids``: (the ids deleted, the ids in hand now, or None
        when the backend cannot tell, as a broker cannot)."""
        return set(), None

    def _remove_matching(self, site: str | None, transport: str | None) -> int | None:
        """Delete the queued items of ``site``/``transport``: how many (None: cannot count)."""
        return None

    def use_middleware(self, chain: MiddlewareChain) -> None:
        """Run ``chain``'s enqueue hooks around every enqueue through this manager: the process's
        chain, handed over by whoever opens the manager (statusq.runtime does)."""
        self._middleware = chain

    @abc.abstractmethod
    def _put(self, message: Message) -> str:
        """Put one checked, encoded item on its queue, held ``message.delay`` seconds; its id."""

    def _put_in(self, messages: list[Message], connection: Any) -> list[str]:
        """Write ``messages`` in the transaction of the application's ``connection``."""
        name = type(self).__name__
        raise InvalidArgument("connection", f"{name}: only the database backend enqueues in a transaction")

    def _put_done(self, ids: list[str]) -> None:
        """The items are put and their keys bound (the inline backend runs them here)."""

    def _put_many(self, messages: list[Message]) -> list[str]:
        """Put a checked batch in one transaction, all or nothing; their ids in order."""
        raise Unsupported(f"{type(self).__name__} cannot enqueue a batch")

    @abc.abstractmethod
    def subscribe(self, subscription: Subscription) -> Consumer: ...

    def control_channel(self) -> ControlChannel | None:
        """A new subscription to the control broadcast, for one worker; None: this backend has
        no control channel (or none is configured)."""
        return None

    #: This backend's operator side; the default can do nothing (a producer-only double).
    admin: Admin = Admin()

    # The admin's operations, on the manager too: what statusq.connect() hands an application.

    def backlog(self) -> list[BacklogRow] | None:
        return self.admin.backlog()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.admin.dead_letters(limit)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        return self.admin.requeue_dead(ids)

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        return self.admin.purge_dead(ids)

    def release_claims(self, owner: str, reason: str) -> int:
        return self.admin.release_claims(owner, reason)

    def send_control(self, text: str) -> bool:
        """Broadcast a control command to every daemon.  ``remove-site`` (and ``update-site``,
        which ends a removal) is first written to the shared store, so that a worker that misses
        the message, or starts later, still follows it.  False: there is no control channel, the
        removal is only stored (workers re-read it within ``[queue] site_recheck``)."""
        command = parse_command(text)
        if command.site is not None and self._removal_store is not None:
            store = self._removal_store()
            try:
                if command.command == "remove-site":
                    store.remove(command.site)
                else:
                    store.restore(command.site)
            finally:
                store.close()
            if not self.admin.can(Capability.CONTROL):
                return False
        self.admin.send_control(text)
        return True

    # Pauses live in the shared store (``db_url``), whatever the backend: see statusq.pauses.

    #: Opens the pause table; set by whoever builds the manager from a config (statusq.runtime).
    _pause_store: Callable[[], PauseStore] | None = None

    def use_pauses(self, opener: Callable[[], PauseStore]) -> None:
        self._pause_store = opener

    #: Opens the site removals' table (statusq.queues.db.removals); set as ``_pause_store`` is.
    _removal_store: Callable[[], RemovalStore] | None = None

    def use_removals(self, opener: Callable[[], RemovalStore]) -> None:
        self._removal_store = opener

    def _pauses(self) -> PauseStore:
        if self._pause_store is None:
            raise Unsupported(f"{type(self).__name__}: no shared store to keep pauses in")
        return self._pause_store()

    def pause(self, *, site: str | None = None, transport: str | None = None, reason: str = "") -> Pause:
        """Hold every item of ``site`` (or of ``transport``) in every daemon on every host until
        :meth:`resume`: not run, not dead-lettered, attempts not counted.  Persisted."""
        store = self._pauses()
        try:
            done = store.pause(site=site, transport=transport, reason=reason)
        finally:
            store.close()
        self._announce_pauses()
        return done

    def resume(self, *, site: str | None = None, transport: str | None = None) -> bool:
        """Lift a pause (False: there was none); daemons run the held items again."""
        store = self._pauses()
        try:
            lifted = store.resume(site=site, transport=transport)
        finally:
            store.close()
        self._announce_pauses()
        return lifted

    def _announce_pauses(self) -> None:
        """Tell every daemon to re-read the pauses now, where a control channel exists; without
        one (or when sending fails) they follow within ``[queue] pause_recheck`` anyway."""
        if not self.admin.can(Capability.CONTROL):
            return
        try:
            self.admin.send_control("pauses")
        except StatusqError as exc:
            log.info("pauses stored; the control message that speeds them up was not sent: %s", exc)

    def pauses(self) -> list[Pause]:
        """The pauses in force, oldest first."""
        store = self._pauses()
        try:
            return store.list()
        finally:
            store.close()

    def close(self) -> None:
        """Free connections; the manager is unusable afterwards."""
        self.close_keys()

    def close_keys(self) -> None:
        if self._keys is not None:
            self._keys.close()
            self._keys = None
        if self._cancels is not None:
            self._cancels.close()
            self._cancels = None

    def __enter__(self) -> QueueManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
