"""A worker's side of its state file: kept current item by item, cheaply (see StateReporter)."""

from __future__ import annotations

import json
import logging
import mmap
import operator
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from statusq.item import Delivery
from statusq.limits import MemoryProbe
from statusq.middleware import Middleware
from statusq.outcome import Outcome, Result
from statusq.state import WORKER_FIELDS, ItemInHand, WorkerState

log = logging.getLogger("statusq.state")

_ENCODER = json.JSONEncoder(separators=(",", ":"))
_text = json.encoder.encode_basestring_ascii
#: WorkerState fields outside the item path: their JSON text is cached between writes.
_STATIC = tuple(
    name for name in WORKER_FIELDS if name not in {"state", "item", "others", "handled", "rss", "updated_at"}
)
_static_values = operator.attrgetter(*_STATIC)


def _item_json(item: ItemInHand) -> str:
    return (
        f'{{"id":{_text(item.id)},"site":{_text(item.site)},"transport":{_text(item.transport)},'
        f'"attempt":{int(item.attempt)},"since":{float(item.since)!r},'
        f'"since_monotonic":{float(item.since_monotonic)!r},'
        f'"time_limit":{"null" if item.time_limit is None else repr(float(item.time_limit))}}}'
    )


class StateReporter(Middleware):
    """A worker's side: keeps its state file current, item by item.

    Writes happen around each item (before the handler runs, after the outcome is settled), so
    the file says "busy since T" for exactly as long as the supervisor's hard limit must watch.
    That is twice per item, on the hot path, so the file is a shared memory map written in place
    and padded with spaces (JSON whitespace): a store into memory is no system call, and each
    system call in this thread hands the GIL to stomp.py's receiver thread (a ``pwrite`` per
    write cost a fifth of the worker's time; a write-and-rename a hundred times more).  Readers
    see the page cache the map writes to, and cope with overlapping a write (:func:`read_worker`).
    RSS is read from /proc at most once a second, for the same reason.  A failed write is logged
    once and otherwise ignored: monitoring must never fail an item.
    """

    #: The map grows in steps of this size when a state (a long error, say) outgrows it.
    PAGE = 4096
    RSS_EVERY = 1.0
    #: Items shorter than this have their "idle" write deferred (see :meth:`after_item`).
    DEFER_UNDER = 0.5

    def __init__(self, path: Path, state: WorkerState, probe: MemoryProbe | None = None) -> None:
        self.path = path
        self.state = state
        self.probe = probe or MemoryProbe()
        self._map: mmap.mmap | None = None
        self._length = 0  # of the JSON last written; beyond it, spaces
        self._rss_at = -self.RSS_EVERY
        self._warned = False
        #: State changed in memory but not yet written (see :meth:`after_item`) since then
        #: (monotonic), or None.
        self.dirty_since: float | None = None
        self._static_key: tuple[Any, ...] = ()
        self._static = ""
        #: The deliveries of ``state.item`` and ``state.others``, by identity.
        self._item_of: Delivery | None = None
        self._others_of: list[Delivery] = []
        #: Each transport's time limit (``Policies.time_limit``), once the worker is built: written
        #: with the item, so the supervisor's hard limit is the one the worker applies.
        self.time_limit_of: Callable[[str], float] | None = None

    @property
    def dirty(self) -> bool:
        return self.dirty_since is not None

    def write(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.state, key, value)
        self._write()

    def _write(self) -> None:
        self.dirty_since = None
        self.state.updated_at = time.time()
        data = self._json().encode()
        try:
            self._store(data)
        except (OSError, ValueError) as exc:
            if not self._warned:
                log.warning("cannot write the state file %s (the supervisor is blind to us): %s", self.path, exc)
                self._warned = True

    def _json(self) -> str:
        """The state as JSON, as ``json.dumps(state.to_dict())`` would have it (a test holds the
        two equal), built from a cached text of the fields that rarely change: encoding the
        whole state took as long as the rest of a no-op item."""
        state = self.state
        key = _static_values(state)
        if key != self._static_key:
            self._static_key = key
            self._static = _ENCODER.encode(dict(zip(_STATIC, key, strict=True)))[:-1]
        item = state.item
        item_json = "null" if item is None else _item_json(item)
        others = ",".join([_item_json(other) for other in state.others]) if state.others else ""
        handled = ",".join([f'"{k}":{int(v)}' for k, v in state.handled.items()])  # keys: Outcome values
        return (
            f'{self._static},"state":{_text(state.state)},"item":{item_json},"others":[{others}],'
            f'"handled":{{{handled}}},"rss":{int(state.rss)},"updated_at":{float(state.updated_at)!r}}}'
        )

    def _store(self, data: bytes) -> None:
        if self._map is None or len(data) > len(self._map):
            self._open(len(data))
        assert self._map is not None
        n = len(data)
        self._map[:n] = data
        if self._length > n:
            self._map[n : self._length] = b" " * (self._length - n)
        self._length = n

    def _open(self, needed: int) -> None:
        """Map the file, or a larger one: the old content stays until overwritten."""
        size = (needed // self.PAGE + 1) * self.PAGE
        old = 0
        if self._map is not None:
            old = len(self._map)
            self._map.close()
            self._map = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._map[old:] = b" " * (size - old)  # ftruncate's zero bytes are not JSON whitespace

    def _rss(self) -> int:
        now = time.monotonic()
        if now - self._rss_at >= self.RSS_EVERY:
            self._rss_at = now
            self.state.rss = self.probe.rss()
        return self.state.rss

    def ready(self, consumer: str | None) -> None:
        self._rss_at = time.monotonic()
        self.write(state="idle", consumer=consumer, ready_at=time.time(), rss=self.probe.rss())

    def failed(self, error: str) -> None:
        self.write(state="failed", error=error)

    def exiting(self) -> None:
        self._item_of, self._others_of = None, []
        self.write(state="exiting", item=None, others=[])

    def request(self, what: str) -> None:
        """Ask the supervisor to do what only it can (``restart``, ``shutdown``)."""
        self.write(request=what, requests=self.state.requests + 1)

    def before_item(self, delivery: Delivery) -> None:
        state = self.state
        now = time.monotonic()
        limit = self.time_limit_of(delivery.transport) if self.time_limit_of is not None else None
        item = ItemInHand(delivery.id, delivery.site, delivery.transport, delivery.attempt, time.time(), now, limit)
        if state.item is None:
            state.item, self._item_of = item, delivery
        else:  # several in hand ([daemon] concurrency): the oldest stays `item`...
            state.others.append(item)
            self._others_of.append(delivery)
            # ...and the file, which says it already, is rewritten at the next flush (within
            # FlushWhenIdle's delay): one write per item of every item in hand was O(N) per item
            self._later(now)
            return
        state.state = "busy"
        self._write()

    def _later(self, now: float) -> None:
        if self.dirty_since is None:
            self.dirty_since = now

    def _finished(self, delivery: Delivery) -> ItemInHand | None:
        """Take ``delivery``'s entry out of the items in hand; the oldest left becomes ``item``."""
        state = self.state
        if delivery is self._item_of or not state.others:
            item = state.item
            if state.others:
                state.item, self._item_of = state.others.pop(0), self._others_of.pop(0)
            else:
                state.item, self._item_of = None, None
            return item
        for index, other in enumerate(self._others_of):
            if other is delivery:
                del self._others_of[index]
                return state.others.pop(index)
        return None

    def after_item(self, delivery: Delivery, result: Result) -> None:
        """Idle again; written at once only after a long item.

        After a short one, the next item's "busy" write usually follows within microseconds and
        says all this too, so the "idle" write waits for :meth:`flush`, which the worker's loop
        calls when no next item came within a few milliseconds
        (:class:`~statusq.daemon.child.FlushWhenIdle`).  That halves the writes while items flow;
        the file says "busy" a moment too long, by far less than any time limit.
        """
        state = self.state
        outcome = result.outcome.value
        if result.outcome is not Outcome.HOLD:  # a held item was not settled, only handed back
            state.handled[outcome] = state.handled.get(outcome, 0) + 1
        item = self._finished(delivery)
        state.rss = self._rss()
        now = time.monotonic()
        if state.item is not None:  # others still in hand: written at the next flush
            self._later(now)
            return
        state.state = "idle"
        if item is None or now - item.since_monotonic >= self.DEFER_UNDER:
            self._write()
        else:
            self.dirty_since = now

    def flush(self) -> None:
        """Write what :meth:`after_item` left in memory."""
        if self.dirty_since is not None:
            self._write()
