"""The QueueManager interface: what every backend (database, STOMP broker, inline) provides.

Producers call :meth:`QueueManager.enqueue`; a worker calls :meth:`QueueManager.subscribe` and
gets a :class:`Consumer`, which fetches deliveries and settles each one exactly one way: ack,
retry later, or dead-letter.  Retry *policy* lives in the processor, not here, so every backend
counts attempts and backs off the same way.
"""

from __future__ import annotations

import abc
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from statusq.errors import QueueError
from statusq.item import Delivery

log = logging.getLogger(__name__)

#: Told of each item this process enqueued: (the site as the caller gave it, or None; transport).
EnqueueObserver = Callable[[str | None, str], None]
_observers: list[EnqueueObserver] = []
_depth = threading.local()


def observe_enqueues(observer: EnqueueObserver) -> Callable[[], None]:
    """Have ``observer`` called after every successful enqueue in this process, by any backend
    (plugins and the dispatcher enqueue through managers of their own); returns the undo.  A
    worker's metrics count with it; a process that installs none pays one empty loop."""
    _observers.append(observer)

    def stop() -> None:
        if observer in _observers:
            _observers.remove(observer)

    return stop


def _observed(enqueue: Callable[..., str]) -> Callable[..., str]:
    """``enqueue`` that tells the observers, once per item even when an override calls super()."""

    @functools.wraps(enqueue)
    def wrapper(
        self: QueueManager, payload: Any, transport: str, site: str | None = None, *args: Any, **kw: Any
    ) -> str:
        depth = getattr(_depth, "value", 0)
        _depth.value = depth + 1
        try:
            item_id = enqueue(self, payload, transport, site, *args, **kw)
        finally:
            _depth.value = depth
        if depth == 0:
            for observer in _observers:
                try:
                    observer(site, transport)
                except Exception:
                    log.exception("enqueue observer failed; ignored")
        return item_id

    return wrapper


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
    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every backend's enqueue is observed without each having to remember to report.
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("enqueue")
        if own is not None and not getattr(own, "__isabstractmethod__", False):
            cls.enqueue = _observed(own)  # type: ignore[method-assign]

    @abc.abstractmethod
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
