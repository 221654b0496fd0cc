"""The database backend: a work queue in one table, claimed atomically, for SQLite or PostgreSQL.

A claim is one ``UPDATE … WHERE id = (SELECT … LIMIT 1) RETURNING``: on SQLite the statement holds
the write lock, on PostgreSQL the sub-select skips rows locked by other workers, so two workers
never take the same item.  A claim older than ``claim_timeout`` is taken back (its worker is
presumed dead), which is how an item survives a SIGKILLed worker.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from statusq.config import Config
from statusq.errors import QueueError
from statusq.item import Delivery, Message
from statusq.queues.base import BacklogRow, Consumer, DeadLetter, QueueManager, Subscription
from statusq.queues.db.consumer import DBConsumer
from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.schema import NOTIFY_CHANNEL, dead, items, metadata

log = logging.getLogger(__name__)

_STALE = "claim expired: the worker holding it died or hung"


class DBQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.url = config.db_url
        self.default_site = config.sites.default
        self.engine = make_engine(self.url)
        self.claim_timeout = config.queue.claim_timeout
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._create_tables()

    def _create_tables(self) -> None:
        create_tables(self.engine, metadata)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate driver errors at the boundary, naming the database (without a password)."""
        with db_errors(self.engine):
            yield

    def _put(self, message: Message) -> str:
        now = time.time()
        row = {
            "site": message.site,
            "transport": message.transport,
            "priority": message.priority,
            "content_type": message.content_type,
            "body": message.body,
            "headers": json.dumps(message.headers),
            "attempts": 0,
            "enqueued_at": now,
            "available_at": now,
        }
        with self.errors(), self.engine.begin() as conn:
            item_id = conn.execute(insert(items).values(row).returning(items.c.id)).scalar_one()
            self._notify(conn, message.transport)
        return str(item_id)

    def _notify(self, conn: Connection, transport: str) -> None:
        if self.is_postgres:
            conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, transport)))

    def subscribe(self, subscription: Subscription) -> Consumer:
        return DBConsumer(self, subscription)

    def claim(self, subscription: Subscription, worker: str) -> Delivery | None:
        now = time.time()
        ready = and_(
            items.c.available_at <= now,
            or_(items.c.claimed_by.is_(None), items.c.claimed_at < now - self.claim_timeout),
        )
        if subscription.transports is not None:
            mine: ColumnElement[bool] = items.c.transport.in_(sorted(subscription.transports))
            if subscription.catch_unknown:
                mine = or_(mine, items.c.transport.not_in(sorted(subscription.known_transports)))
            ready = and_(ready, mine)
        if subscription.sites is not None:
            ready = and_(ready, items.c.site.in_(sorted(subscription.sites)))
        pick = select(items.c.id).where(ready).order_by(items.c.priority.desc(), items.c.id).limit(1)
        if self.is_postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(items)
            .where(items.c.id == pick.scalar_subquery())
            .values(
                claimed_by=worker,
                claimed_at=now,
                attempts=items.c.attempts + 1,
                last_error=case((items.c.claimed_by.is_not(None), literal(_STALE)), else_=items.c.last_error),
            )
            .returning(*items.c)
        )
        with self.errors(), self.engine.begin() as conn:
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
            token=(row["id"], worker),
            error=row["last_error"],
        )

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
        with self.errors(), self.engine.begin() as conn:
            if conn.execute(delete(items).where(self._mine(delivery))).rowcount == 0:
                self._lost(delivery, "ack")

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        values = {
            "claimed_by": None,
            "claimed_at": None,
            "available_at": time.time() + delay,
            "last_error": error,
        }
        with self.errors(), self.engine.begin() as conn:
            if conn.execute(update(items).where(self._mine(delivery)).values(values)).rowcount == 0:
                self._lost(delivery, "retry")
                return
            self._notify(conn, delivery.transport)

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
        columns = [
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
        with self.errors(), self.engine.begin() as conn:
            # RETURNING, not rowcount: psycopg reports -1 for INSERT ... SELECT.
            copied = conn.execute(insert(dead).from_select(columns, copy).returning(dead.c.id)).all()
            if not copied:
                self._lost(delivery, "dead-letter")
                return
            conn.execute(delete(items).where(self._mine(delivery)))

    def release(self, delivery: Delivery) -> None:
        """Give a claimed item back untouched: the attempt it started does not count."""
        values = {"claimed_by": None, "claimed_at": None, "attempts": items.c.attempts - 1}
        with self.errors(), self.engine.begin() as conn:
            conn.execute(update(items).where(self._mine(delivery)).values(values))

    def release_claims(self, owner: str, reason: str) -> int:
        """Give back what a dead worker held, at once; unlike :meth:`release` the attempt counts
        (its handler may have run), so an item that keeps killing workers is still dead-lettered."""
        values = {"claimed_by": None, "claimed_at": None, "available_at": time.time(), "last_error": reason}
        with self.errors(), self.engine.begin() as conn:
            released: int = conn.execute(update(items).where(items.c.claimed_by == owner).values(values)).rowcount
            if released:
                self._notify(conn, "released")
        return released

    def backlog(self) -> list[BacklogRow]:
        now = time.time()
        unclaimed = items.c.claimed_by.is_(None)
        counts = select(
            items.c.site,
            items.c.transport,
            func.sum(case((and_(unclaimed, items.c.available_at <= now), 1), else_=0)),
            func.sum(case((and_(unclaimed, items.c.available_at > now), 1), else_=0)),
            func.sum(case((unclaimed, 0), else_=1)),
        ).group_by(items.c.site, items.c.transport)
        dead_counts = select(dead.c.site, dead.c.transport, func.count()).group_by(dead.c.site, dead.c.transport)
        rows: dict[tuple[str, str], BacklogRow] = {}
        with self.errors(), self.engine.connect() as conn:
            for site, transport, ready, delayed, in_flight in conn.execute(counts):
                rows[site, transport] = BacklogRow(site, transport, ready, delayed, in_flight)
            for site, transport, count in conn.execute(dead_counts):
                rows.setdefault((site, transport), BacklogRow(site, transport)).dead = count
        return [rows[key] for key in sorted(rows)]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        query = select(dead).order_by(dead.c.dead_at.desc(), dead.c.id.desc()).limit(limit)
        with self.errors(), self.engine.connect() as conn:
            return [
                DeadLetter(
                    id=str(r["id"]),
                    site=r["site"],
                    transport=r["transport"],
                    attempts=r["attempts"],
                    error=r["error"],
                    enqueued_at=r["enqueued_at"],
                    dead_at=r["dead_at"],
                    content_type=r["content_type"],
                    body=r["body"],
                    headers=json.loads(r["headers"]),
                )
                for r in conn.execute(query).mappings()
            ]

    def _dead_filter(self, ids: Iterable[str] | None) -> Any:
        if ids is None:
            return literal(True)
        return dead.c.id.in_([int(i) for i in ids if str(i).isdigit()])

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        chosen = self._dead_filter(None if ids is None else list(ids))
        now = time.time()
        copy = select(
            dead.c.id,
            dead.c.site,
            dead.c.transport,
            dead.c.priority,
            dead.c.content_type,
            dead.c.body,
            dead.c.headers,
            literal(0),
            dead.c.enqueued_at,
            literal(now),
        ).where(chosen)
        columns = [
            "id",
            "site",
            "transport",
            "priority",
            "content_type",
            "body",
            "headers",
            "attempts",
            "enqueued_at",
            "available_at",
        ]
        try:
            with self.errors(), self.engine.begin() as conn:
                moved = len(conn.execute(insert(items).from_select(columns, copy).returning(items.c.id)).all())
                conn.execute(delete(dead).where(chosen))
                self._notify(conn, "requeue")
        except QueueError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise QueueError("a dead letter's id is queued again already; purge it instead") from exc
            raise
        return moved

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        chosen = self._dead_filter(None if ids is None else list(ids))
        with self.errors(), self.engine.begin() as conn:
            return conn.execute(delete(dead).where(chosen)).rowcount

    def close(self) -> None:
        self.engine.dispose()
