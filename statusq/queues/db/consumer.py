"""One worker's consumer on the database backend: batched claims, items in hand, settlements.

Where an item enters: :meth:`DBConsumer.fetch` hands out the batch in hand in claim order; when
it is used up, one transaction writes the pending settlements and claims the next batch
(:mod:`statusq.queues.db.claims`: one statement, up to ``[queue.db] prefetch`` items, sized to
the worker's pace unless set).  Where it leaves: :meth:`ack`, :meth:`retry` and
:meth:`dead_letter` only record; the :class:`~statusq.queues.db.settler.SettlementWriter` writes
them within ``[queue] ack_flush`` (or with the next claim, whichever is first).

On PostgreSQL the consumer LISTENs, so an enqueue wakes it at once instead of at the next poll,
and its statements run on connections of their own (:meth:`Database.consumer_connection`): each
commits by itself, without waiting for the WAL flush, so a claim is one round trip.  A claim or a
settlement lost to a server crash only runs an item again (the claim expires, or the finished
item is still there), which at-least-once allows; enqueues keep the server's setting, so what
``enqueue`` returned is never lost.

A claim older than ``claim_timeout`` is taken back (its worker is presumed dead), which is how
an item survives a SIGKILLed worker whose supervisor died too; a worker gives back what it
held unstarted longer than half of that, so a batch never outlives its claim.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, select, update

from statusq import defaults
from statusq.item import Delivery
from statusq.names import worker_name
from statusq.queues.base import Consumer, Subscription
from statusq.queues.db import settler
from statusq.queues.db.claims import (
    ClaimSize,
    claim_params,
    claim_statement,
    release_statement,
    to_delivery,
)
from statusq.queues.db.database import Database
from statusq.queues.db.listen import drain, open_listener
from statusq.queues.db.schema import HELD, NOTIFY_CHANNEL, items
from statusq.queues.db.settler import Settlement, SettlementWriter
from statusq.queues.db.turns import in_turns, next_after

log = logging.getLogger(__name__)

#: Held rows (an enqueue's delay) are looked at again at least this often, even when the
#: earliest one known is due later: another producer may have added one due sooner.
HELD_RECHECK = 0.25
_STOP_TIMEOUT = 10.0  # the writer's last window at shutdown


class DBConsumer(Consumer):
    def __init__(
        self,
        db: Database,
        subscription: Subscription,
        *,
        ack_flush: float = defaults.ACK_FLUSH,
        prefetch: int | None = None,
    ) -> None:
        self.db = db
        self.subscription = subscription
        self.worker = worker_name()
        self._promote_at = 0.0  # when held rows may next be due
        self.in_hand: deque[Delivery] = deque()
        self.sizes = ClaimSize(prefetch)
        self._claim_stmt = claim_statement(subscription, self.worker, skip_locked=db.is_postgres)
        self._after = ""  # the last site the previous claim served: the next one starts after it
        self._release_stmt = release_statement(self.worker, db.is_postgres)
        self.writer = SettlementWriter(self._flush, flush_after=ack_flush, batch=prefetch or defaults.DB_PREFETCH)
        self.writer.start()
        self._listen: Any = None
        if db.is_postgres:
            self._listen = open_listener(db.engine, NOTIFY_CHANNEL)

    @property
    def claim_owner(self) -> str:
        return self.worker

    def filenos(self) -> list[int]:
        return [self._listen.fileno()] if self._listen is not None else []

    def drain_wakeups(self) -> None:
        # Only once the batch in hand is used up, just before the next claim: until then the
        # notifications can wait (the fd stays readable, and the listener comes back anyway),
        # and reading them cost a system call per item.
        if self._listen is None or self.in_hand:
            return
        self._listen, _ = drain(self._listen)

    # -- claims ---------------------------------------------------------------------------------

    def fetch(self) -> Delivery | None:
        """The next item in hand; when none is left, one transaction settles what finished and
        claims the next batch.  None at once when nothing is ready."""
        if self.in_hand and time.monotonic() - self.in_hand[0].token[2] > self.db.claim_timeout / 2:
            log.warning("%d claimed item(s) waited past half of claim_timeout: handed back", len(self.in_hand))
            self._hand_back()
        if not self.in_hand:
            self.sizes.ran_out(time.monotonic())
            self._claim()
        if self.in_hand:
            return self.in_hand.popleft()
        self.writer.hurry()  # idle: settle what is done now, not at the deadline
        return None

    def _claim(self) -> None:
        now = time.time()
        params = claim_params(self.sizes.next(), now, self.db.claim_timeout, self._after)
        window = self.writer.take()
        try:
            lost = settler.write_dead(self.db, self.worker, [s for s in window if s.kind == settler.DEAD])
            window = [s for s in window if s.kind != settler.DEAD]
            with self.db.errors(), self.db.consumer_connection() as conn:
                lost += settler.write(conn, self.db, self.worker, window) if window else []
                if now >= self._promote_at:
                    self._promote(conn, now)
                rows = conn.execute(self._claim_stmt, params).mappings().all()
        except BaseException:
            self.writer.give_back(window)
            raise
        self._report_lost(lost)
        self.sizes.claimed(len(rows), time.monotonic())
        self.in_hand.extend(to_delivery(row, self.worker) for row in in_turns(rows, self._after))
        self._after = next_after(rows, self._after)

    def _promote(self, conn: Connection, now: float) -> None:
        """Held rows whose time has come join the claimable ones (two index look-ups: nothing
        scans the held rows), and the next look is planned."""
        conn.execute(update(items).where(HELD, items.c.available_at <= now).values(held=0))
        due = conn.execute(select(func.min(items.c.available_at)).where(HELD)).scalar()
        self._promote_at = min(due if due is not None else now + HELD_RECHECK, now + HELD_RECHECK)

    def _hand_back(self) -> int:
        """Unclaim the items in hand, their attempt not counted; returns how many."""
        ids = [delivery.token[0] for delivery in self.in_hand]
        self.in_hand.clear()
        if not ids:
            return 0
        with self.db.errors(), self.db.consumer_connection() as conn:
            released: int = conn.execute(self._release_stmt, {"ids": ids}).rowcount
            self.db.notify(conn, "released")
        return released

    # -- settlements ----------------------------------------------------------------------------

    def _flush(self, window: list[Settlement]) -> None:
        """The writer's own transaction, for a window that did not wait for the next claim."""
        lost = settler.write_dead(self.db, self.worker, [s for s in window if s.kind == settler.DEAD])
        window = [s for s in window if s.kind != settler.DEAD]
        with self.db.errors(), self.db.consumer_connection() as conn:
            lost += settler.write(conn, self.db, self.worker, window)
        self._report_lost(lost)

    def _report_lost(self, lost: Sequence[Settlement]) -> None:
        for settlement in lost:
            log.warning(
                "claim lost before %s, id=%s: it outlived claim_timeout and another worker may have run it again",
                settlement.kind,
                settlement.item_id,
            )

    def ack(self, delivery: Delivery) -> None:
        self.writer.record(Settlement(settler.ACK, delivery.token[0]))

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        # The headers go along: what middleware added (the attempt's span, for the next one's link).
        at, headers = time.time() + delay, json.dumps(delivery.headers)
        self.writer.record(Settlement(settler.RETRY, delivery.token[0], delivery.transport, at, error, headers))

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        """Back after ``delay``, the attempt its claim counted taken back (it did not run)."""
        # At once, not through the writer: rare (a paused site's items), and not an end.
        values = {"claimed_by": None, "claimed_at": None, "available_at": time.time() + delay}
        mine = and_(items.c.id == delivery.token[0], items.c.claimed_by == self.worker)
        stmt = update(items).where(mine).values({**values, "attempts": items.c.attempts - 1})
        with self.db.errors(), self.db.engine.begin() as conn:
            if conn.execute(stmt).rowcount == 0:
                self._report_lost([Settlement("defer", delivery.token[0])])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.writer.record(Settlement(settler.DEAD, delivery.token[0], delivery.transport, time.time(), reason))

    def flush(self) -> None:
        """Write the recorded settlements now, from the calling thread (a program that settles
        by hand and reads the queue at once; a worker leaves it to the writer)."""
        window = self.writer.take()
        if window:
            try:
                self._flush(window)
            except BaseException:
                self.writer.give_back(window)
                raise

    def release(self) -> None:
        """Settle what finished, then hand back the claims not started (graceful shutdown)."""
        if not self.writer.stop(_STOP_TIMEOUT):
            log.warning("db settlements: the last window was not written (those items run again)")
        released = self._hand_back()
        if released:
            log.info("released %d claimed item(s) back to the queue", released)

    def close(self) -> None:
        try:
            self.release()
        finally:
            if self._listen is not None:
                self._listen.close()
                self._listen = None
