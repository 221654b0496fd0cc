"""Cancelling items and purging a site's backlog, on backends that can delete and on those that
cannot.

A database or the memory broker deletes what is queued at once.  What it cannot delete, it
*remembers*: an item in hand (its handler is running; it cannot be stopped, but its retry must
not run), and everything on a STOMP broker, which offers no way to delete one message.  A
remembered cancellation is a row in a store the workers read (the keys' database); a worker
drops such an item when it arrives, acked and logged with the reason, never run.

Workers read the store at most once a second (:class:`CancelView`), so a cancellation reaches
every worker within about a second, and costs an item a set lookup.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from statusq.errors import InvalidArgument
from statusq.item import Delivery

#: What a worker keeps of the store is refreshed this often.
REFRESH = 1.0
#: A remembered cancellation or purge is forgotten after this long (its items are long gone).
REMEMBERED_FOR = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Purge:
    """Items of ``site`` (and ``transport``; None: all) enqueued before ``before`` are dropped."""

    site: str | None
    transport: str | None
    before: float
    reason: str

    def matches(self, delivery: Delivery) -> bool:
        return (
            delivery.enqueued_at < self.before
            and (self.site is None or delivery.site == self.site)
            and (self.transport is None or delivery.transport == self.transport)
        )


@dataclass(frozen=True, slots=True)
class Cancelled:
    """What ``cancel`` did: ids deleted from the queue, and ids remembered to be dropped on arrival
    (in hand now, or on a broker that cannot delete)."""

    removed: list[str] = field(default_factory=list)
    remembered: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Purged:
    """What ``purge`` did: items deleted (None: the backend cannot count them), and whether items
    it could not delete will be dropped on arrival."""

    removed: int | None
    remembered: bool


class CancelStore(abc.ABC):
    """Remembered cancellations and purges, for every worker to read."""

    clock: Callable[[], float] = staticmethod(time.time)

    @abc.abstractmethod
    def remember(self, ids: Iterable[str], reason: str) -> None: ...

    @abc.abstractmethod
    def remember_purge(self, purge: Purge) -> None: ...

    @abc.abstractmethod
    def load(self) -> tuple[dict[str, str], list[Purge]]:
        """Every remembered id (with its reason) and purge not yet forgotten."""

    def close(self) -> None:
        """Let go of connections, where there are any."""


class MemoryCancels(CancelStore):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._ids: dict[str, tuple[str, float]] = {}
        self._purges: list[tuple[Purge, float]] = []
        self._lock = threading.Lock()

    def remember(self, ids: Iterable[str], reason: str) -> None:
        now = self.clock()
        with self._lock:
            self._ids.update((i, (reason, now)) for i in ids)

    def remember_purge(self, purge: Purge) -> None:
        with self._lock:
            self._purges.append((purge, self.clock()))

    def load(self) -> tuple[dict[str, str], list[Purge]]:
        oldest = self.clock() - REMEMBERED_FOR
        with self._lock:
            self._ids = {i: (r, at) for i, (r, at) in self._ids.items() if at >= oldest}
            self._purges = [(p, at) for p, at in self._purges if at >= oldest]
            return {i: r for i, (r, _) in self._ids.items()}, [p for p, _ in self._purges]


def cancel_items(
    ids: Iterable[str],
    reason: str,
    remove: Callable[[list[str]], tuple[set[str], set[str] | None]],
    store: Callable[[], CancelStore],
) -> Cancelled:
    """``QueueManager.cancel``: ``remove`` deletes what the backend can and says what is in hand
    (None: it cannot tell); the rest is remembered in ``store``."""
    wanted = list(dict.fromkeys(str(i) for i in ids))
    if not wanted:
        raise InvalidArgument("ids", "no id given")
    removed, in_hand = remove(wanted)
    remember = [i for i in wanted if i not in removed and (in_hand is None or i in in_hand)]
    if remember:
        store().remember(remember, reason)
    return Cancelled([i for i in wanted if i in removed], remember)


def purge_items(
    site: str | None,
    transport: str | None,
    reason: str,
    now: float,
    remove: Callable[[str | None, str | None], int | None],
    store: Callable[[], CancelStore],
) -> Purged:
    """``QueueManager.purge``: delete what matches, and remember the purge for the rest."""
    if site is None and transport is None:
        raise InvalidArgument("site", "give a site, a transport or both (a purge of everything is refused)")
    removed = remove(site, transport)
    store().remember_purge(Purge(site, transport, now, reason))
    return Purged(removed, True)


class CancelView:
    """A worker's copy of the store, read again when :data:`REFRESH` has passed; ``dropped``
    says why a delivery must not run (None: it may)."""

    def __init__(self, store: CancelStore, refresh: float = REFRESH) -> None:
        self.store = store
        self.refresh = refresh
        self._ids: dict[str, str] = {}
        self._purges: list[Purge] = []
        self._next = 0.0

    def read(self) -> None:
        """Read the store now (a worker at boot)."""
        self._next = time.monotonic() + self.refresh
        self._ids, self._purges = self.store.load()

    def dropped(self, delivery: Delivery) -> str | None:
        if time.monotonic() >= self._next:
            self.read()
        reason = self._ids.get(delivery.id)
        if reason is not None:
            return f"cancelled: {reason}"
        for purge in self._purges:
            if purge.matches(delivery):
                return f"purged: {purge.reason}"
        return None
