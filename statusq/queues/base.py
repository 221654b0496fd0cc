"""The QueueManager interface: what every backend (database, STOMP broker, inline) provides.

Producers call :meth:`QueueManager.enqueue`; a worker calls :meth:`QueueManager.subscribe` and
gets a :class:`Consumer`, which fetches deliveries and settles each one exactly one way: ack,
retry later, or dead-letter.  Retry *policy* lives in the processor, not here, so every backend
counts attempts and backs off the same way.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from statusq import codec, names
from statusq.defaults import DEFAULT_SITE
from statusq.errors import QueueError
from statusq.item import Delivery, Message
from statusq.middleware import MiddlewareChain

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


class Consumer(abc.ABC):
    """One worker's view of its subscription."""

    def filenos(self) -> list[int]:
        """Descriptors that become readable when items may have arrived (empty: poll only)."""
        return []

    def drain_wakeups(self) -> None:
        """Consume whatever made :meth:`filenos` readable."""

    @abc.abstractmethod
    def fetch(self) -> Delivery | None:
        """The next delivery, or None at once when nothing is ready (never blocks)."""

    def take_progress(self) -> bool:
        """Whether fetches since the last call did queue work without yielding a delivery (a
        STOMP consumer re-counting redelivered frames): ``--idle-exit`` must not call that idle."""
        return False

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The handler finished: the item is gone for good."""

    @abc.abstractmethod
    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Make the item available again after ``delay`` seconds, its attempt counted."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the item where operators can see, requeue or purge it."""

    def control_pending(self) -> bool:
        """True when control messages wait for :meth:`take_control`."""
        return False

    def take_control(self) -> list[tuple[dict[str, str], bytes]]:
        """Control messages received since the last call (headers, body)."""
        return []

    @property
    def claim_owner(self) -> str | None:
        """The name this consumer's claims are recorded under, so that a supervisor can give back
        what a dead worker held (:meth:`QueueManager.release_claims`).  None: the backend does
        that by itself (a broker redelivers a lost connection's unacked messages)."""
        return None

    def release(self) -> None:
        """Hand back anything fetched ahead but not yet handled (graceful shutdown)."""

    def close(self) -> None:
        """Release and disconnect."""
        self.release()


class QueueManager(abc.ABC):
    """A backend.  :meth:`enqueue` is the same for all of them (check, encode, middleware); a
    backend implements only :meth:`_put`, so no backend can forget a check or a hook."""

    #: The site of an item enqueued without one; backends built from a config set its own.
    default_site: str = DEFAULT_SITE
    #: Told of every enqueue through this manager (see :meth:`use_middleware`).
    _middleware: MiddlewareChain | None = None

    def enqueue(
        self,
        payload: Any,
        transport: str,
        site: str | None = None,
        headers: dict[str, str] | None = None,
        priority: int | None = None,
        content_type: str | None = None,
    ) -> str:
        """Queue one item; returns its id.  Raises DataError for a payload that cannot travel."""
        body, content_type = codec.encode(payload, content_type)
        message = Message(
            site=names.check_site(site or self.default_site),
            transport=names.check_transport(transport),
            body=body,
            content_type=content_type,
            headers=names.check_headers(headers),
            priority=names.check_priority(priority),
        )
        middleware = self._middleware
        if middleware is not None:
            middleware.before_enqueue(message)
        message.id = self._put(message)
        if middleware is not None:
            middleware.after_enqueue(message)
        return message.id

    def use_middleware(self, chain: MiddlewareChain) -> None:
        """Run ``chain``'s enqueue hooks around every enqueue through this manager: the process's
        chain, handed over by whoever opens the manager (statusq.runtime does)."""
        self._middleware = chain

    @abc.abstractmethod
    def _put(self, message: Message) -> str:
        """Put one checked, encoded item on its queue; its id."""

    @abc.abstractmethod
    def subscribe(self, subscription: Subscription) -> Consumer: ...

    @abc.abstractmethod
    def backlog(self) -> list[BacklogRow]:
        """Counts per site and transport, as far as the backend can know them."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    def send_control(self, text: str) -> None:
        """Broadcast a control command to every daemon (see statusq.control)."""
        raise QueueError(f"the {type(self).__name__} has no control channel")

    @abc.abstractmethod
    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead letters back on their queue with a fresh attempt count (None: all)."""

    @abc.abstractmethod
    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters for good (None: all)."""

    def release_claims(self, owner: str, reason: str) -> int:
        """Make every item claimed by ``owner`` (a dead worker's :attr:`Consumer.claim_owner`)
        available again at once, its attempt still counted and ``reason`` kept as its last error;
        returns how many.  Called by the supervisor after it reaped the worker, so the items come
        back now rather than after ``claim_timeout``.  The default has nothing to release."""
        return 0

    def close(self) -> None:
        """Free connections; the manager is unusable afterwards."""

    def __enter__(self) -> QueueManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
