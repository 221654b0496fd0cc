"""The state of the in-memory backend: items, claims, dead letters and control, behind one lock.

It follows the database backend's rules, so that what a test shows here holds there: an attempt is
counted when an item is claimed, a retry waits on ``available_at``, items are taken by priority,
then in turns across sites, then in order of arrival, a claim older than ``claim_timeout`` is
taken back, and a dead worker's claims are given back by owner.  Time is read from an
injectable clock only, so tests move it by hand.  Handlers never run under the lock: a handler
may enqueue, and a consumer may run on a thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from statusq.defaults import CLAIM_TIMEOUT
from statusq.item import Delivery, Message
from statusq.queues.base import BacklogRow, ControlMessage, DeadLetter, Subscription
from statusq.queues.cancels import MemoryCancels
from statusq.queues.keys import MemoryKeys
from statusq.wakeup import WakePipe

log = logging.getLogger(__name__)

Clock = Callable[[], float]
_STALE = "claim expired: the worker holding it died or hung"


@dataclass(slots=True)
class _Item:
    id: str
    seq: int  # arrival order, kept through retries and requeues (the database's id order)
    site: str
    transport: str
    priority: int
    content_type: str
    body: bytes
    headers: dict[str, str]
    enqueued_at: float
    available_at: float
    attempts: int = 0
    claimed_by: str | None = None
    claimed_at: float = 0.0
    last_error: str | None = None
    dead_at: float = 0.0
    expires_at: float | None = None


class Inbox:
    """One subscriber's side of the broker: a non-blocking pipe that becomes readable when items
    may be ready (a consumer's) or control arrived (a control channel's, which also keeps the
    messages broadcast to it), for select()."""

    def __init__(self) -> None:
        self.control: deque[ControlMessage] = deque()
        self._wakeup = WakePipe()

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def notify(self) -> None:
        self._wakeup.wake()

    def drain(self) -> None:
        self._wakeup.drain()

    def close(self) -> None:
        self._wakeup.close()


@dataclass(eq=False)
class MemoryBroker:
    """Shared by every manager and consumer given it; thread-safe."""

    clock: Clock = time.time
    claim_timeout: float = CLAIM_TIMEOUT
    id_prefix: str = "memory-"
    items: dict[str, _Item] = field(default_factory=dict)
    dead: dict[str, _Item] = field(default_factory=dict)  # in the order they died
    acked: int = 0  # items done for good, for tests and the inline backend's ``handled``
    _inboxes: list[Inbox] = field(default_factory=list)  # consumers': woken for items
    _listeners: list[Inbox] = field(default_factory=list)  # control channels'
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Unique keys, on the broker's clock (statusq.queues.keys): shared like the items.
    keys: MemoryKeys = field(init=False)
    #: Cancellations of items in hand (statusq.queues.cancels).
    cancels: MemoryCancels = field(init=False)
    #: Per owner, the site its last claim served: its next claim starts at the site after it.
    _turns: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.keys = MemoryKeys(self.clock)
        self.cancels = MemoryCancels(self.clock)

    # -- producing ---------------------------------------------------------------------------

    def put(self, message: Message) -> str:
        return self.put_many([message])[0]

    def put_many(self, messages: list[Message]) -> list[str]:
        """All at once, under the lock: no consumer sees half a batch.  A delay is held here, on
        the broker's clock, as the database holds it in ``available_at``."""
        with self._lock:
            now, ids = self.clock(), []
            for m in messages:
                seq = next(self._seq)
                item = _Item(
                    f"{self.id_prefix}{seq}",
                    seq,
                    m.site,
                    m.transport,
                    m.priority,
                    m.content_type,
                    m.body,
                    m.headers,
                    now,
                    now + m.delay,
                    expires_at=m.expires_at,
                )
                self.items[item.id] = item
                ids.append(item.id)
        self.wake()
        return ids

    def remove(self, ids: list[str]) -> tuple[set[str], set[str]]:
        """Delete the queued ones of ``ids``: (deleted, in hand)."""
        with self._lock:
            found = [self.items[i] for i in ids if i in self.items]
            removed = {i.id for i in found if i.claimed_by is None}
            for item_id in removed:
                del self.items[item_id]
            return removed, {i.id for i in found if i.claimed_by is not None}

    def remove_matching(self, site: str | None, transport: str | None) -> int:
        with self._lock:
            doomed = [
                i.id
                for i in self.items.values()
                if i.claimed_by is None
                and (site is None or i.site == site)
                and (transport is None or i.transport == transport)
            ]
            for item_id in doomed:
                del self.items[item_id]
            return len(doomed)

    # -- consuming ---------------------------------------------------------------------------

    def claim(self, subscription: Subscription, owner: str) -> Delivery | None:
        """The next ready item of ``subscription``, its attempt counted: the highest priority
        first; within it, sites in turns (the site after the one ``owner`` last served, in name
        order, wrapping round; the database's rule), and a site's oldest item first."""
        with self._lock:
            now = self.clock()
            ready = [i for i in self.items.values() if self._ready(i, now) and _wanted(subscription, i)]
            if not ready:
                return None
            top = max(i.priority for i in ready)
            ready = [i for i in ready if i.priority == top]
            sites = sorted({i.site for i in ready})
            after = self._turns.get(owner, "")
            site = next((s for s in sites if s > after), sites[0])
            self._turns[owner] = site
            return self._claim(min((i for i in ready if i.site == site), key=lambda i: i.seq), owner, now)

    def claim_id(self, item_id: str, owner: str) -> Delivery | None:
        """Item ``item_id`` if it is still queued and unclaimed, whatever its ``available_at``
        (the inline backend runs a retry at once)."""
        with self._lock:
            item = self.items.get(item_id)
            if item is None or item.claimed_by is not None:
                return None
            return self._claim(item, owner, self.clock())

    def _ready(self, item: _Item, now: float) -> bool:
        if item.available_at > now:
            return False
        return item.claimed_by is None or item.claimed_at < now - self.claim_timeout

    def _claim(self, item: _Item, owner: str, now: float) -> Delivery:
        if item.claimed_by is not None:
            item.last_error = _STALE
        item.claimed_by, item.claimed_at = owner, now
        item.attempts += 1
        return Delivery(
            id=item.id,
            site=item.site,
            transport=item.transport,
            body=item.body,
            content_type=item.content_type,
            headers=dict(item.headers),
            attempt=item.attempts,
            enqueued_at=item.enqueued_at,
            priority=item.priority,
            expires_at=item.expires_at,
            token=(item.id, owner),
            error=item.last_error,
        )

    def _mine(self, delivery: Delivery, action: str) -> _Item | None:
        """The item ``delivery`` was claimed from, while that claim still holds (lock held)."""
        item_id, owner = delivery.token
        item = self.items.get(item_id)
        if item is not None and item.claimed_by == owner:
            return item
        log.warning(
            "claim lost before %s, id=%s site=%s: it outlived claim_timeout and another worker may have run it again",
            action,
            delivery.id,
            delivery.site,
        )
        return None

    def ack(self, delivery: Delivery) -> None:
        with self._lock:
            if self._mine(delivery, "ack") is not None:
                del self.items[delivery.id]
                self.acked += 1

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        with self._lock:
            item = self._mine(delivery, "retry")
            if item is None:
                return
            item.claimed_by, item.available_at, item.last_error = None, self.clock() + delay, error
            item.headers = dict(delivery.headers)  # what middleware added goes to the next attempt
        self.wake()

    def defer(self, delivery: Delivery, delay: float) -> None:
        """Back after ``delay``, the attempt its claim counted taken back (it did not run)."""
        with self._lock:
            item = self._mine(delivery, "defer")
            if item is None:
                return
            item.claimed_by, item.available_at = None, self.clock() + delay
            item.attempts -= 1
        self.wake()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._lock:
            item = self._mine(delivery, "dead-letter")
            if item is None:
                return
            item.claimed_by, item.last_error, item.dead_at = None, reason, self.clock()
            self.dead[item.id] = self.items.pop(item.id)

    def release(self, owner: str) -> int:
        """Give back untouched what ``owner`` holds: the attempts it started do not count."""
        return self._unclaim(owner, None, uncount=True)

    def release_claims(self, owner: str, reason: str) -> int:
        """Give back what a dead ``owner`` held, at once, its attempts counted and ``reason`` kept."""
        return self._unclaim(owner, reason, uncount=False)

    def _unclaim(self, owner: str, reason: str | None, *, uncount: bool) -> int:
        with self._lock:
            now = self.clock()
            held = [i for i in self.items.values() if i.claimed_by == owner]
            for item in held:
                item.claimed_by = None
                if uncount:
                    item.attempts -= 1
                else:
                    item.available_at, item.last_error = now, reason
        if held:
            self.wake()
        return len(held)

    # -- control and wake-ups ----------------------------------------------------------------

    def attach(self) -> Inbox:
        """A new consumer's inbox: woken whenever items may be ready."""
        inbox = Inbox()
        with self._lock:
            self._inboxes.append(inbox)
        return inbox

    def listen(self) -> Inbox:
        """A new control channel's inbox: it gets every control message from now on."""
        inbox = Inbox()
        with self._lock:
            self._listeners.append(inbox)
        return inbox

    def detach(self, inbox: Inbox) -> None:
        with self._lock:
            for subscribers in (self._inboxes, self._listeners):
                if inbox in subscribers:
                    subscribers.remove(inbox)
        inbox.close()

    def broadcast(self, headers: dict[str, str], body: bytes) -> None:
        """A control message for every control channel (a topic: latecomers do not get it)."""
        with self._lock:
            listeners = list(self._listeners)
            for inbox in listeners:
                inbox.control.append((dict(headers), body))
        for inbox in listeners:
            inbox.notify()

    def wake(self) -> None:
        """Make every consumer's descriptor readable: items may be ready (also call it after
        moving a fake clock past a retry's delay)."""
        with self._lock:
            inboxes = list(self._inboxes)
        for inbox in inboxes:
            inbox.notify()

    # -- administration ----------------------------------------------------------------------

    def backlog(self) -> list[BacklogRow]:
        rows: dict[tuple[str, str], BacklogRow] = {}
        with self._lock:
            now = self.clock()
            for item in self.items.values():
                row = rows.setdefault((item.site, item.transport), BacklogRow(item.site, item.transport))
                if item.claimed_by is not None:
                    row.in_flight += 1
                elif item.available_at <= now:
                    row.ready += 1
                else:
                    row.delayed += 1
            for item in self.dead.values():
                rows.setdefault((item.site, item.transport), BacklogRow(item.site, item.transport)).dead += 1
        return [rows[key] for key in sorted(rows)]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        with self._lock:
            newest = list(reversed(self.dead.values()))[:limit]
        return [_letter(item) for item in newest]

    def requeue_dead(self, ids: Iterable[str] | None = None) -> list[str]:
        """Put dead letters back with a fresh attempt count, in their old place; their ids."""
        with self._lock:
            now = self.clock()
            taken = self._take_dead(ids)
            for item in taken:
                item.attempts, item.available_at, item.last_error, item.dead_at = 0, now, None, 0.0
                item.expires_at = None  # requeued by an operator: run it, even if it had expired
                self.items[item.id] = item
        if taken:
            self.wake()
        return [item.id for item in taken]

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        with self._lock:
            return len(self._take_dead(ids))

    def _take_dead(self, ids: Iterable[str] | None) -> list[_Item]:
        chosen = list(self.dead) if ids is None else [i for i in dict.fromkeys(ids) if i in self.dead]
        return [self.dead.pop(item_id) for item_id in chosen]


def _wanted(subscription: Subscription, item: _Item) -> bool:
    """The database backend's claim filter: transports (or unknown ones, for the sweeper), sites."""
    if subscription.sites is not None and item.site not in subscription.sites:
        return False
    if subscription.transports is None or item.transport in subscription.transports:
        return True
    return subscription.catch_unknown and item.transport not in subscription.known_transports


def _letter(item: _Item) -> DeadLetter:
    return DeadLetter(
        id=item.id,
        site=item.site,
        transport=item.transport,
        attempts=item.attempts,
        error=item.last_error or "",
        enqueued_at=item.enqueued_at,
        dead_at=item.dead_at,
        content_type=item.content_type,
        body=item.body,
        headers=dict(item.headers),
    )
