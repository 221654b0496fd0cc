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
the same way.
"""

from __future__ import annotations

import abc
import enum
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from statusq.defaults import DEFAULT_SITE, MAX_BATCH
from statusq.errors import StatusqError, Unsupported
from statusq.item import Delivery, Item, Message
from statusq.middleware import MiddlewareChain
from statusq.produce import prepare, prepare_batch

if TYPE_CHECKING:
    from statusq.queues.db.pauses import Pause, PauseStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a worker wants: None means everything (all sites, all transports)."""

    transports: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    #: Handler groups served (brokers subscribe per group destination); None: every group.
    groups: frozenset[str] | None = None
    #: Also take items whose transport no plugin registered, to dead-letter them with a reason
    #: instead of leaving them queued forever.  Only the default group's workers do this.
    catch_unknown: bool = False
    known_transports: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    site: str
    transport: str
    attempts: int
    error: str
    enqueued_at: float
    dead_at: float
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BacklogRow:
    site: str
    transport: str
    ready: int = 0  # waiting, can run now
    delayed: int = 0  # waiting for a retry's backoff
    in_flight: int = 0  # claimed by a worker
    dead: int = 0


#: A control message as received: its headers and body.
ControlMessage = tuple[dict[str, str], bytes]


class Consumer(abc.ABC):
    """One worker's deliveries: fetch, and settle each one; nothing else (control commands come
    through a :class:`ControlChannel`, counts through an :class:`Admin`)."""

    def filenos(self) -> list[int]:
        """Descriptors that become readable when items may have arrived (empty: poll only)."""
        return []

    def drain_wakeups(self) -> None:
        """Consume whatever made :meth:`filenos` readable."""

    @abc.abstractmethod
    def fetch(self) -> Delivery | None:
        """The next delivery, or None at once when nothing is ready (never blocks)."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The handler finished: the item is gone for good."""

    @abc.abstractmethod
    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Make the item available again after ``delay`` seconds, its attempt counted."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the item where operators can see, requeue or purge it."""

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        """Make the item available again after ``delay`` seconds, its attempt NOT counted: it
        was not run (a pause holds it).  This fallback counts it (a plain retry); every backend
        of statusq overrides it."""
        log.warning("id=%s: %s cannot defer without counting an attempt", delivery.id, type(self).__name__)
        self.retry(delivery, delay, reason)

    @property
    def claim_owner(self) -> str | None:
        """The name this consumer's claims are recorded under, so that a supervisor can give back
        what a dead worker held (:meth:`Admin.release_claims`).  None: the backend does that by
        itself (a broker redelivers a lost connection's unacked messages)."""
        return None

    def release(self) -> None:
        """Hand back anything fetched ahead but not yet handled (graceful shutdown)."""

    def close(self) -> None:
        """Release and disconnect."""
        self.release()


class ControlChannel(abc.ABC):
    """One worker's subscription to the control broadcast, apart from its items: a command is
    neither queued behind prefetched items nor takes their turn (:mod:`statusq.control`)."""

    def filenos(self) -> list[int]:
        """Descriptors that become readable when a message may have arrived."""
        return []

    def drain_wakeups(self) -> None:
        """Consume whatever made :meth:`filenos` readable."""

    @abc.abstractmethod
    def pending(self) -> bool:
        """True when messages wait for :meth:`take` (cheap: asked between items)."""

    @abc.abstractmethod
    def take(self) -> list[ControlMessage]:
        """Messages received since the last call, oldest first (never blocks)."""

    def timeout(self) -> float:
        """Seconds until :meth:`take` is wanted even without I/O (a reconnect due): 0 while
        messages wait."""
        return 0.0 if self.pending() else math.inf

    def close(self) -> None:
        """Unsubscribe and disconnect."""


class Capability(enum.StrEnum):
    """What an :class:`Admin` can do; the rest it refuses (:class:`~statusq.errors.Unsupported`)
    or, for counts, reports as unknown."""

    BACKLOG = "count the backlog"  # per site and transport, cheaply
    DEAD_LETTERS = "list dead letters"
    REQUEUE = "requeue dead letters"
    PURGE = "purge dead letters"
    RELEASE_CLAIMS = "release claims"  # give back a dead worker's items at once
    CONTROL = "send control commands"


class Admin:
    """What operators do with a backend (``statusq status``, ``deadletters``, ``control``, the web
    page, the supervisor after a worker died).  This base can do nothing: a backend's admin
    overrides what it declares in :attr:`capabilities`."""

    capabilities: frozenset[Capability] = frozenset()

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def backlog(self) -> list[BacklogRow] | None:
        """Counts per site and transport; None when the backend cannot count them cheaply (a
        broker's queue depths are the broker's to tell: see :mod:`statusq.metrics.activemq`)."""
        return None

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        raise self._unsupported(Capability.DEAD_LETTERS)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead letters back on their queue with a fresh attempt count (None: all)."""
        raise self._unsupported(Capability.REQUEUE)

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters for good (None: all)."""
        raise self._unsupported(Capability.PURGE)

    def release_claims(self, owner: str, reason: str) -> int:
        """Make every item claimed by ``owner`` (a dead worker's :attr:`Consumer.claim_owner`)
        available again at once, its attempt still counted and ``reason`` kept as its last error;
        returns how many.  Called by the supervisor after it reaped the worker, so the items come
        back now rather than after ``claim_timeout``.  Without claims there is nothing to release."""
        return 0

    def send_control(self, text: str) -> None:
        """Broadcast a control command to every daemon (see statusq.control)."""
        raise self._unsupported(Capability.CONTROL)

    def _unsupported(self, capability: Capability) -> Unsupported:
        return Unsupported(f"{type(self).__name__}: this backend cannot {capability.value}")


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
    ) -> str:
        """Queue one item; returns its id.  ``delay`` (seconds, ``"5m"``) or ``eta`` (an aware
        datetime): not before then; ``expires`` (seconds, a duration or an aware datetime): not
        run after then, but dead-lettered as expired.  A bad argument raises
        :class:`~statusq.errors.InvalidArgument` (a :class:`DataError`) and enqueues nothing."""
        item = Item(payload, transport, site, delay, eta, expires, headers, priority, content_type)
        message = prepare(item, self.default_site, self.clock(), self.default_priorities)
        middleware = self._middleware
        if middleware is not None:
            middleware.before_enqueue(message)
        message.id = self._put(message)
        if middleware is not None:
            middleware.after_enqueue(message)
        return message.id

    def enqueue_many(self, items: Iterable[Item]) -> list[str]:
        """Queue a batch of :class:`~statusq.Item` in one broker or database transaction, all or
        nothing; returns their ids in order.  Every item is checked, and every middleware's
        ``before_enqueue`` has run on it (a refusal refuses the batch), before anything is sent."""
        messages = prepare_batch(items, self.default_site, self.clock(), MAX_BATCH, self.default_priorities)
        middleware = self._middleware
        if middleware is not None:
            for message in messages:
                middleware.before_enqueue(message)
        ids = self._put_many(messages)
        for message, item_id in zip(messages, ids, strict=True):
            message.id = item_id
        if middleware is not None:
            for message in messages:
                middleware.after_enqueue(message)
        return ids

    def use_middleware(self, chain: MiddlewareChain) -> None:
        """Run ``chain``'s enqueue hooks around every enqueue through this manager: the process's
        chain, handed over by whoever opens the manager (statusq.runtime does)."""
        self._middleware = chain

    @abc.abstractmethod
    def _put(self, message: Message) -> str:
        """Put one checked, encoded item on its queue, held ``message.delay`` seconds; its id."""

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

    def send_control(self, text: str) -> None:
        self.admin.send_control(text)

    # Pauses live in the shared store (``db_url``), whatever the backend: see statusq.pauses.

    #: Opens the pause table; set by whoever builds the manager from a config (statusq.runtime).
    _pause_store: Callable[[], PauseStore] | None = None

    def use_pauses(self, opener: Callable[[], PauseStore]) -> None:
        self._pause_store = opener

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

    def __enter__(self) -> QueueManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
