"""One worker's consumer on the database backend: claims, and the statements that settle them.

It takes one item at a time (no prefetch, so nothing is held that another worker could run), and
on PostgreSQL it LISTENs so that an enqueue wakes it at once instead of at the next poll.

A claim is one ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING``: on SQLite the statement holds
the write lock, on PostgreSQL the sub-select skips rows locked by other workers, so two workers
never take the same item.  A claim older than ``claim_timeout`` is taken back (its worker is
presumed dead), which is how an item survives a SIGKILLed worker.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from statusq.item import Delivery
from statusq.names import worker_name
from statusq.queues.base import Consumer, Subscription
from statusq.queues.db.database import Database
from statusq.queues.db.schema import HELD, NOT_HELD, NOTIFY_CHANNEL, dead, items

log = logging.getLogger(__name__)

_STALE = "claim expired: the worker holding it died or hung"
#: Held rows (an enqueue's delay) are looked at again at least this often, even when the
#: earliest one known is due later: another producer may have added one due sooner.
HELD_RECHECK = 0.25
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


class DBConsumer(Consumer):
    def __init__(self, db: Database, subscription: Subscription) -> None:
        self.db = db
        self.subscription = subscription
        self.worker = worker_name()
        self._promote_at = 0.0  # when held rows may next be due
        self._listen: Any = None
        if db.is_postgres:
            self._listen = self._open_listener()

    def _open_listener(self) -> Any:
        import psycopg  # noqa: PLC0415 -- psycopg: only a consumer on PostgreSQL loads it

        url = self.db.engine.url.set(drivername="postgresql")
        try:
            conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            return conn
        except psycopg.Error as exc:
            log.warning("LISTEN failed, falling back to polling only: %s", exc)
            return None

    @property
    def claim_owner(self) -> str:
        return self.worker

    def filenos(self) -> list[int]:
        return [self._listen.fileno()] if self._listen is not None else []

    def drain_wakeups(self) -> None:
        if self._listen is None:
            return
        import psycopg  # noqa: PLC0415 -- psycopg: only a consumer on PostgreSQL loads it

        try:
            for _ in self._listen.notifies(timeout=0):
                pass
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost, polling only from now on: %s", exc)
            self._listen.close()
            self._listen = None

    def _ready(self, now: float) -> ColumnElement[bool]:
        """This subscription's items that may be claimed now (an expired claim may be)."""
        subscription = self.subscription
        ready = and_(
            NOT_HELD,
            items.c.available_at <= now,
            or_(items.c.claimed_by.is_(None), items.c.claimed_at < now - self.db.claim_timeout),
        )
        if subscription.transports is not None:
            mine: ColumnElement[bool] = items.c.transport.in_(sorted(subscription.transports))
            if subscription.catch_unknown:
                mine = or_(mine, items.c.transport.not_in(sorted(subscription.known_transports)))
            ready = and_(ready, mine)
        if subscription.sites is not None:
            ready = and_(ready, items.c.site.in_(sorted(subscription.sites)))
        return ready

    def fetch(self) -> Delivery | None:
        now = time.time()
        pick = select(items.c.id).where(self._ready(now)).order_by(items.c.priority.desc(), items.c.id).limit(1)
        if self.db.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(items)
            .where(items.c.id == pick.scalar_subquery())
            .values(
                claimed_by=self.worker,
                claimed_at=now,
                attempts=items.c.attempts + 1,
                last_error=case((items.c.claimed_by.is_not(None), literal(_STALE)), else_=items.c.last_error),
            )
            .returning(*items.c)
        )
        with self.db.errors(), self.db.engine.begin() as conn:
            if now >= self._promote_at:
                self._promote(conn, now)
            row = conn.execute(stmt).mappings().first()
        if row is None:
            return None
        return Delivery(
            id=str(row["id"]),
            site=row["site"],
            transport=row["transport"],
            body=row["body"],
            content_type=row["content_type"],
            headers=json.loads(row["headers"]),
            attempt=row["attempts"],
            enqueued_at=row["enqueued_at"],
            priority=row["priority"],
            expires_at=row["expires_at"],
            token=(row["id"], self.worker),
            error=row["last_error"],
        )

    def _promote(self, conn: Connection, now: float) -> None:
        """Held rows whose time has come join the claimable ones (two index look-ups: nothing
        scans the held rows), and the next look is planned."""
        conn.execute(update(items).where(HELD, items.c.available_at <= now).values(held=0))
        due = conn.execute(select(func.min(items.c.available_at)).where(HELD)).scalar()
        self._promote_at = min(due if due is not None else now + HELD_RECHECK, now + HELD_RECHECK)

    def _mine(self, delivery: Delivery) -> Any:
        item_id, worker = delivery.token
        return and_(items.c.id == item_id, items.c.claimed_by == worker)

    def _lost(self, delivery: Delivery, action: str) -> None:
        log.warning(
            "claim lost before %s, id=%s site=%s: it outlived claim_timeout and another worker may have run it again",
            action,
            delivery.id,
            delivery.site,
        )

    def ack(self, delivery: Delivery) -> None:
        with self.db.errors(), self.db.engine.begin() as conn:
            if conn.execute(delete(items).where(self._mine(delivery))).rowcount == 0:
                self._lost(delivery, "ack")

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        values = {
            "claimed_by": None,
            "claimed_at": None,
            "available_at": time.time() + delay,
            "last_error": error,
        }
        with self.db.errors(), self.db.engine.begin() as conn:
            if conn.execute(update(items).where(self._mine(delivery)).values(values)).rowcount == 0:
                self._lost(delivery, "retry")
                return
            self.db.notify(conn, delivery.transport)

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        """Back after ``delay``, the attempt its claim counted taken back (it did not run)."""
        values = {"claimed_by": None, "claimed_at": None, "available_at": time.time() + delay}
        stmt = update(items).where(self._mine(delivery)).values({**values, "attempts": items.c.attempts - 1})
        with self.db.errors(), self.db.engine.begin() as conn:
            if conn.execute(stmt).rowcount == 0:
                self._lost(delivery, "defer")

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        copy = select(
            items.c.id,
            items.c.site,
            items.c.transport,
            items.c.priority,
            items.c.content_type,
            items.c.body,
            items.c.headers,
            items.c.attempts,
            literal(reason),
            items.c.enqueued_at,
            literal(time.time()),
        ).where(self._mine(delivery))
        with self.db.errors(), self.db.engine.begin() as conn:
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... SELECT.
            copied = conn.execute(insert(dead).from_select(_DEAD_COLUMNS, copy).returning(dead.c.id)).all()
            if not copied:
                self._lost(delivery, "dead-letter")
                return
            conn.execute(delete(items).where(self._mine(delivery)))

    def close(self) -> None:
        if self._listen is not None:
            self._listen.close()
            self._listen = None
