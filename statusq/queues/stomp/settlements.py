"""What a settlement writer has pending: plain ACKs, and re-sends (pure bookkeeping, no thread).

Apart from the writer thread (:mod:`statusq.queues.stomp.settler`): the rules of when a window is
due are tested with a fake clock alone, no thread and no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from statusq.queues.stomp.wire import ID as ITEM_ID

_IDLE_WAIT = 1.0  # with nothing pending the writer still wakes now and then: no wait without a timeout


@dataclass(frozen=True, slots=True)
class Resend:
    """A message sent in place of the frame ``ack_id`` (a retry, a dead letter, a recount)."""

    ack_id: str
    destination: str
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Window:
    """The settlements of one flush: plain ACKs, and the re-sends that go in one transaction."""

    generation: int
    acks: list[str] = field(default_factory=list)
    resends: list[Resend] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.acks) + len(self.resends)


class Settlements:
    """The pending window: pure bookkeeping, no thread, no lock, the clock passed in.

    A window is written when its oldest settlement is ``flush_after`` old, when it holds ``batch``
    settlements, or at once when the worker is idle (``urgent``).  A write takes every pending
    ACK (one socket send, cheap) but re-sends only once *they* are due: each window of re-sends
    is a broker transaction, and a broker that syncs its journal on every commit (ActiveMQ) held
    the connection's other frames behind one commit per batch of ACKs.
    """

    def __init__(self, flush_after: float, batch: int) -> None:
        self.flush_after = flush_after
        self.batch = batch
        self._window = Window(0)
        self._acks_since = 0.0
        self._resends_since = 0.0
        self.urgent = False  # the worker has nothing else to do: write now, not at the deadline

    def __len__(self) -> int:
        return len(self._window)

    def record_ack(self, generation: int, ack_id: str, now: float) -> bool:
        """Record an ACK; True when the writer must be told (first of a window, or batch full)."""
        if not self._admit(generation):
            return False
        if not self._window.acks:
            self._acks_since = now
        self._window.acks.append(ack_id)
        return self._tell()

    def record_resend(self, generation: int, resend: Resend, now: float) -> bool:
        if not self._admit(generation):
            return False
        if not self._window.resends:
            self._resends_since = now
        self._window.resends.append(resend)
        return self._tell()

    def _admit(self, generation: int) -> bool:
        if generation < self._window.generation:
            return False  # from a connection already replaced: the broker redelivers that frame
        if generation > self._window.generation:
            self.void(generation)
        return True

    def _tell(self) -> bool:
        size = len(self._window)
        return size == 1 or size >= self.batch

    @property
    def generation(self) -> int:
        """The newest consuming connection settlements were recorded or voided for."""
        return self._window.generation

    def void(self, generation: int) -> int:
        """Forget what was pending for connections before ``generation``; returns how much."""
        dropped = len(self._window) if generation > self._window.generation else 0
        if dropped or generation > self._window.generation:
            self._window = Window(generation)
        return dropped

    def _deadline(self) -> float:
        window = self._window
        since = [t for t, part in ((self._acks_since, window.acks), (self._resends_since, window.resends)) if part]
        return min(since) + self.flush_after

    def wait_time(self, now: float) -> float:
        """How long the writer may sleep: until the oldest pending settlement is due."""
        if not self._window:
            return _IDLE_WAIT
        if self.urgent or len(self._window) >= self.batch:
            return 0.0
        return max(0.0, self._deadline() - now)

    def due(self, now: float) -> bool:
        window = self._window
        return bool(window) and (self.urgent or len(window) >= self.batch or now >= self._deadline())

    def _resends_due(self, now: float | None) -> bool:
        resends = self._window.resends
        if not resends:
            return False
        return now is None or self.urgent or len(resends) >= self.batch or now >= self._resends_since + self.flush_after

    def take(self, now: float | None = None) -> Window:
        """Every pending ACK, and the re-sends if they are due at ``now`` (None: everything)."""
        window = self._window
        taken = Window(window.generation, window.acks, window.resends if self._resends_due(now) else [])
        self.urgent = False
        self._window = Window(window.generation, [], [] if taken.resends else window.resends)
        return taken


#: Ids kept at most (the oldest forgotten first): a reconnect's worth many times over.
SUPERSEDED_MOST = 10_000


class Superseded:
    """Items whose re-send (a retry, a dead letter, a hot site's move, a give-back) the broker
    confirmed but whose original's ACK could not be written (its consuming connection was lost):
    the broker redelivers that original, and run, it would be an item run twice (a moved or
    given-back item run by both copies; a retry's attempt run once more).  Redelivered to this
    worker, it is acked unrun instead (:meth:`drop`).  Redelivered to another worker it runs:
    the bound of duplicates after a lost connection stays what it was.  Thread-safe: the writer's
    thread adds, the worker's loop drops."""

    def __init__(self, most: int = SUPERSEDED_MOST) -> None:
        self.most = most
        self._ids: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._lock = threading.Lock()

    def add(self, item_ids: Iterable[str | None]) -> None:
        with self._lock:
            for item_id in item_ids:
                if item_id:
                    self._ids[item_id] = None
            while len(self._ids) > self.most:
                del self._ids[next(iter(self._ids))]

    def drop(self, headers: dict[str, str]) -> bool:
        """Whether this frame is the redelivered original of a confirmed re-send (then forgotten)."""
        if not self._ids or headers.get("redelivered") != "true":
            return False
        with self._lock:
            return self._ids.pop(headers.get(ITEM_ID, ""), False) is None
