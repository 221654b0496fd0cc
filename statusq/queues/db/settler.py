"""One writer for every settlement of a database consumer: acks, retries, dead letters.

Why batched: an ack per transaction cost as much as the claim did.  Here the worker's thread only
records a settlement (a list append under a lock), and a window of them is written in one
transaction: one ``DELETE … WHERE id IN (…)`` for the acks, one executemany ``UPDATE`` for the
retries, the dead letters copied and deleted, one NOTIFY if anything came back to the queue.

When a window is written, whichever comes first:

- its oldest settlement is ``[queue] ack_flush`` old (the writer's thread, on the wall clock, as
  for STOMP acks: :mod:`statusq.queues.stomp.settler`), whatever the worker's thread is doing, so
  a long or hung handler never holds finished items unsettled;
- the worker claims its next batch: the window is written in the claim's own transaction
  (:meth:`SettlementWriter.take`), one commit for both;
- the worker is idle, or stops (:meth:`SettlementWriter.hurry`, :meth:`SettlementWriter.stop`).

So a SIGKILLed worker loses at most the settlements of one flush window: its supervisor releases
its claims (:meth:`~statusq.queues.db.admin.DBAdmin.release_claims`), and those items, finished
but not yet deleted, run again.  A duplicate, never a loss.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, insert, literal, select, update

from statusq.queues.db.claims import id_in
from statusq.queues.db.database import Database
from statusq.queues.db.schema import dead, items

log = logging.getLogger(__name__)

ACK, RETRY, DEAD = "ack", "retry", "dead"
_IDLE_WAIT = 1.0  # with nothing pending the writer still wakes now and then: no wait without a timeout
_BACKOFF = 1.0  # after a failed write, before the window is tried again
_DEAD_COLUMNS = [
    "id",
    "site",
    "transport",
    "priority",
    "content_type",
    "body",
    "headers",
    "attempts",
    "error",
    "enqueued_at",
    "dead_at",
]


@dataclass(frozen=True, slots=True)
class Settlement:
    """How one claimed item ends: ``kind`` ACK, RETRY (at ``at``, epoch) or DEAD, with ``error``."""

    kind: str
    item_id: int
    transport: str = ""
    at: float = 0.0
    error: str = ""
    #: A retry's headers as JSON: what middleware added goes to the next attempt (a span's link).
    headers: str = "{}"


def write(conn: Connection, db: Database, worker: str, window: Sequence[Settlement]) -> list[Settlement]:
    """Write the acks and retries of ``window`` on ``conn`` (one statement each: on PostgreSQL
    each commits by itself, see :meth:`Database.consumer_connection`); the caller wrote its dead
    letters first (:func:`write_dead`).  Return the settlements whose claim was lost (the item
    outlived ``claim_timeout`` and another worker took it)."""
    lost: list[Settlement] = []
    acks = [s for s in window if s.kind == ACK]
    retries = [s for s in window if s.kind == RETRY]
    if acks:
        stmt = delete(items).where(id_in(db.is_postgres), items.c.claimed_by == worker).returning(items.c.id)
        gone = {row[0] for row in conn.execute(stmt, {"ids": [s.item_id for s in acks]})}
        lost += [s for s in acks if s.item_id not in gone]
    if retries:
        again = (
            update(items)
            .where(items.c.id == bindparam("item_id"), items.c.claimed_by == worker)
            .values(
                claimed_by=None,
                claimed_at=None,
                available_at=bindparam("at"),
                last_error=bindparam("error"),
                headers=bindparam("headers"),
            )
        )
        rows = [{"item_id": s.item_id, "at": s.at, "error": s.error, "headers": s.headers} for s in retries]
        conn.execute(again, rows)
    if retries:
        for transport in sorted({s.transport for s in retries}):
            db.notify(conn, transport)
    return lost


def write_dead(db: Database, worker: str, letters: Sequence[Settlement]) -> list[Settlement]:
    """Dead letters, copied and deleted in one transaction (rare: no hurry, but never half
    done: a copy left beside its item would refuse the next dead-lettering of that id)."""
    if not letters:
        return []
    with db.errors(), db.engine.begin() as conn:
        return [letter for letter in letters if not _dead_letter(conn, worker, letter)]


def _dead_letter(conn: Connection, worker: str, letter: Settlement) -> bool:
    mine = (items.c.id == letter.item_id) & (items.c.claimed_by == worker)
    copy = select(
        items.c.id,
        items.c.site,
        items.c.transport,
        items.c.priority,
        items.c.content_type,
        items.c.body,
        items.c.headers,
        items.c.attempts,
        literal(letter.error),
        items.c.enqueued_at,
        literal(letter.at),
    ).where(mine)
    # RETURNING, not rowcount: psycopg reports -1 for INSERT ... SELECT.
    if not conn.execute(insert(dead).from_select(_DEAD_COLUMNS, copy).returning(dead.c.id)).all():
        return False
    conn.execute(delete(items).where(mine))
    return True


class SettlementWriter:
    """The pending window and the thread that writes it; the worker's thread only records.

    ``flush``: writes one window in a transaction of its own (raises on a database error: the
    window is kept and tried again after a pause).  ``batch``: a window this full is written at
    once.  ``clock``: injectable, as the thread waits on it."""

    def __init__(
        self,
        flush: Callable[[list[Settlement]], None],
        *,
        flush_after: float,
        batch: int,
        clock: Callable[[], float] = time.monotonic,
        name: str = "db settlements",
    ) -> None:
        self._flush = flush
        self.flush_after = flush_after
        self.batch = batch
        self.name = name
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[Settlement] = []
        self._since = 0.0
        self._urgent = False
        self._stopping = False
        self._paused_until = 0.0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._pending)

    # -- the worker's side ----------------------------------------------------------------------

    def record(self, settlement: Settlement) -> None:
        with self._cond:
            if not self._pending:
                self._since = self._clock()
            self._pending.append(settlement)
            if len(self._pending) in (1, self.batch):
                self._cond.notify()

    def hurry(self) -> None:
        """The worker has nothing else to do: write what is pending now, not at the deadline."""
        with self._cond:
            if self._pending and not self._urgent:
                self._urgent = True
                self._cond.notify()

    def take(self) -> list[Settlement]:
        """Everything pending, for the caller to write in its own transaction (a claim's); if that
        fails, the caller gives them back with :meth:`give_back`."""
        with self._cond:
            return self._take()

    def _take(self) -> list[Settlement]:
        taken, self._pending, self._urgent = self._pending, [], False
        return taken

    def give_back(self, window: list[Settlement]) -> None:
        with self._cond:
            if window:
                self._pending[:0] = window
                self._since = min(self._since, self._clock()) if len(self._pending) > len(window) else self._clock()

    # -- the thread -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"statusq-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is pending and end the thread (at most ``timeout``); False if it could not."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        window = self.take()  # recorded after the thread's last look, or no thread ran
        return not window or self._write(window)

    def _due(self, now: float) -> bool:
        if not self._pending or now < self._paused_until:
            return False
        return self._urgent or len(self._pending) >= self.batch or now >= self._since + self.flush_after

    def _wait_time(self, now: float) -> float:
        if not self._pending:
            return _IDLE_WAIT
        if now < self._paused_until:
            return self._paused_until - now
        if self._urgent or len(self._pending) >= self.batch:
            return 0.0
        return max(0.0, self._since + self.flush_after - now)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = self._clock()
                if not self._stopping and not self._due(now):
                    self._cond.wait(self._wait_time(now))
                    now = self._clock()
                if self._stopping:
                    return  # stop() writes what is left from its own thread
                window = self._take() if self._due(now) else []
            if window and not self._write(window):
                self.give_back(window)
                with self._cond:
                    self._paused_until = self._clock() + _BACKOFF

    def _write(self, window: list[Settlement]) -> bool:
        """Never raises: a failed write is logged, and its items stay claimed."""
        try:
            self._flush(window)
            return True
        except Exception as exc:
            log.error("%s: %d settlement(s) not written yet: %s", self.name, len(window), exc)
            return False
