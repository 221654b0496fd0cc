"""Unique keys: at most one live item per key, and a keyed item that succeeded is not run again.

``enqueue(..., key="site:example.org:cron", unique_for="10m")``: while an item with that key is
pending, or was handled within ``unique_for``, another enqueue with the key adds nothing and
returns the existing item's id.  The keys live apart from the items (a database for every
backend but the memory one), so the same rule holds on a broker, which cannot look into its
queues; the item carries its key in a header, for the worker.

One row per key, in one of three states:

- *reserved*: a producer is putting the item (its id is not known yet); the reservation lapses
  after :data:`RESERVE_TTL` if that producer died before it finished;
- *pending*: the item is queued, or in hand, or waiting for a retry; its key is freed when it is
  dead-lettered, and, as a safety for items removed behind statusq's back (a queue purged on the
  broker), :data:`PENDING_MAX` after it was due;
- *done*: it succeeded; the key stays taken for ``unique_for`` seconds (0: freed at once).  The
  row is kept until a new item takes the key, or :data:`DONE_KEPT` after it expired, so that a
  duplicate delivery of that item (a crash after its handler, before its ack) is acked unrun.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from statusq.errors import QueueError

# Headers the item carries its key and unique_for in (not ``statusq-*``: every backend keeps these
# across retries as user headers, and a handler may read them); set at enqueue by statusq.produce.
from statusq.produce import KEY_HEADER, MAX_KEY_BYTES, UNIQUE_FOR_HEADER

__all__ = ["KEY_HEADER", "MAX_KEY_BYTES", "UNIQUE_FOR_HEADER", "MemoryKeys", "Taken", "UniqueKeys"]

#: A reservation whose producer never bound an id to it lapses after this many seconds.
RESERVE_TTL = 60.0
#: A pending item's key is freed this long after the item was due, even if it never reported back.
PENDING_MAX = 7 * 86400.0
#: A done key's row is kept this long after its unique_for ran out (to know duplicates), then deleted.
DONE_KEPT = 86400.0
#: Old done rows are swept at most this often per process.
SWEEP_EVERY = 600.0
#: How long an enqueue waits for another producer to finish putting the item of the same key.
WAIT_FOR_BIND = 10.0

RESERVED, PENDING, DONE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Taken:
    """The key belongs to a live item: ``item_id`` ("" while its producer is still putting it)."""

    item_id: str


class UniqueKeys(abc.ABC):
    """The store of keys: one per backend (a database table, or the memory broker's dict)."""

    clock: Callable[[], float] = staticmethod(time.time)

    @abc.abstractmethod
    def reserve(self, key: str, unique_for: float) -> Taken | None:
        """Take ``key`` for a new item (None), unless a live item holds it (its :class:`Taken`).
        Atomic: of two producers racing for a key, one reserves and the other sees it taken."""

    @abc.abstractmethod
    def bind(self, key: str, item_id: str, due: float) -> None:
        """Our reservation's item was put with ``item_id``, due to run at ``due`` (epoch)."""

    @abc.abstractmethod
    def release(self, key: str, item_id: str) -> None:
        """Free ``key`` if ``item_id`` holds it ("" for our reservation whose put failed)."""

    @abc.abstractmethod
    def finish(self, key: str, item_id: str) -> None:
        """``item_id`` succeeded: its key stays taken for its ``unique_for`` (0: free now), and
        :meth:`is_done` knows it until a new item takes the key."""

    @abc.abstractmethod
    def is_done(self, key: str, item_id: str) -> bool:
        """Whether ``item_id`` already succeeded under ``key`` (a duplicate delivery)."""

    def close(self) -> None:
        """Let go of connections, where there are any."""

    def claim(self, key: str, unique_for: float) -> str | None:
        """:meth:`reserve`, waiting out another producer's put of the same key: None when the
        key is ours, else the id of the item that holds it."""
        deadline = time.monotonic() + WAIT_FOR_BIND
        while True:
            taken = self.reserve(key, unique_for)
            if taken is None or taken.item_id:
                return None if taken is None else taken.item_id
            if time.monotonic() >= deadline:
                raise QueueError(f"key {key!r} is being enqueued by another producer that has not finished")
            time.sleep(0.01)


@dataclass(slots=True)
class _Row:
    item_id: str
    state: int
    unique_for: float
    expires_at: float


class MemoryKeys(UniqueKeys):
    """The memory backend's keys: a dict, on the broker's clock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def reserve(self, key: str, unique_for: float) -> Taken | None:
        now = self.clock()
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.expires_at > now:
                return Taken(row.item_id)
            self._rows[key] = _Row("", RESERVED, unique_for, now + RESERVE_TTL)
            return None

    def bind(self, key: str, item_id: str, due: float) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.state == RESERVED:
                row.item_id, row.state, row.expires_at = item_id, PENDING, due + PENDING_MAX

    def release(self, key: str, item_id: str) -> None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.item_id == item_id:
                del self._rows[key]

    def finish(self, key: str, item_id: str) -> None:
        now = self.clock()
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row.item_id == item_id:
                row.state, row.expires_at = DONE, now + row.unique_for
            if now >= self._swept + SWEEP_EVERY:
                self._swept = now
                for old in [k for k, r in self._rows.items() if r.state == DONE and r.expires_at < now - DONE_KEPT]:
                    del self._rows[old]

    def is_done(self, key: str, item_id: str) -> bool:
        with self._lock:
            row = self._rows.get(key)
            return row is not None and row.state == DONE and row.item_id == item_id
