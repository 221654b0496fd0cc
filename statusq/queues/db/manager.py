"""The database backend: a work queue in one table, for SQLite or PostgreSQL.

The manager is the producer (an INSERT, and a NOTIFY on PostgreSQL); each worker's
:class:`~statusq.queues.db.consumer.DBConsumer` claims and settles, the
:class:`~statusq.queues.db.admin.DBAdmin` counts and manages dead letters.  All three work on
one :class:`~statusq.queues.db.database.Database` (the engine).
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, delete, insert, select, true

from statusq.config import Config
from statusq.errors import StatusqError
from statusq.item import Message
from statusq.queues.base import Consumer, ControlChannel, QueueManager, Subscription
from statusq.queues.cancels import CancelStore
from statusq.queues.db import inserts
from statusq.queues.db.admin import DBAdmin
from statusq.queues.db.cancels import SqlCancels
from statusq.queues.db.consumer import DBConsumer
from statusq.queues.db.control import DBControlChannel
from statusq.queues.db.database import Database
from statusq.queues.db.keys import SqlKeys
from statusq.queues.db.schema import items
from statusq.queues.db.transactional import insert_rows
from statusq.queues.keys import UniqueKeys

__all__ = ["DBQueueManager"]

log = logging.getLogger(__name__)


def _headers(headers: dict[str, str]) -> str:
    return json.dumps(headers) if headers else "{}"


def _copy_row(message: Message, now: float) -> tuple[Any, ...]:
    """The values of :data:`inserts.COPY_COLUMNS` after ``id``, as :meth:`DBQueueManager._row`
    gives them by name (a batch's COPY, PostgreSQL's one-item insert)."""
    delay = message.delay
    return (
        message.site,
        message.transport,
        message.priority,
        message.content_type,
        message.body,
        _headers(message.headers),
        0,
        now,
        now + delay,
        1 if delay > 0 else 0,
        message.expires_at,
    )


class DBQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.url = config.db_url
        self.default_site = config.sites.default
        self.max_body = config.queue.max_body
        self.default_priorities = config.default_priorities()
        self.queue = config.queue
        self.db = Database(self.url, config.queue.claim_timeout, config.queue.db.sqlite_synchronous)
        self.engine = self.db.engine
        self.admin = DBAdmin(self.db, config.queue.db.control_secret)
        self._one_by_one: inserts.OneByOne | None = None  # PostgreSQL's one-item enqueue
        #: Consumers work on this manager's Database, which close() disposes of: each is closed
        #: first (its settlements written, its claims handed back), or its settlement thread
        #: would go on trying a closed database (dropped tables, in the suite) and its finished
        #: items run again after claim_timeout.
        self._consumers: weakref.WeakSet[DBConsumer] = weakref.WeakSet()

    def _row(self, message: Message, now: float) -> dict[str, Any]:
        return {
            "site": message.site,
            "transport": message.transport,
            "priority": message.priority,
            "content_type": message.content_type,
            "body": message.body,
            "headers": _headers(message.headers),
            "attempts": 0,
            "enqueued_at": now,
            "available_at": now + message.delay,  # a delay is held here: no worker sees the row before
            "held": 1 if message.delay > 0 else 0,
            "expires_at": message.expires_at,
        }

    def _put(self, message: Message) -> str:
        if self.db.is_postgres:
            if self._one_by_one is None:
                self._one_by_one = inserts.OneByOne(self.engine.url)
            with self.db.errors():
                return str(self._one_by_one.insert(_copy_row(message, time.time())))
        row = self._row(message, time.time())
        with self.db.errors(), self.engine.begin() as conn:
            item_id = conn.execute(insert(items).values(row).returning(items.c.id)).scalar_one()
            self.db.notify(conn, message.transport)
        return str(item_id)

    def _put_many(self, messages: list[Message]) -> list[str]:
        """One transaction, the ids back in the order given, one NOTIFY per transport: on
        PostgreSQL one binary COPY, on SQLite one ``executemany`` (see
        :mod:`statusq.queues.db.inserts`)."""
        now = time.time()
        rows = [_copy_row(message, now) for message in messages]
        with self.db.errors(), self.engine.begin() as conn:
            if self.db.is_postgres:
                ids: Sequence[int] = inserts.insert_many(conn, rows)
            else:
                ids = inserts.insert_many_sqlite(conn, rows)
            for transport in sorted({message.transport for message in messages}):
                self.db.notify(conn, transport)
        return [str(item_id) for item_id in ids]

    def _put_in(self, messages: list[Message], connection: Any) -> list[str]:
        now = time.time()
        rows = [self._row(message, now) for message in messages]
        return insert_rows(self.engine, connection, rows, {message.transport for message in messages})

    def subscribe(self, subscription: Subscription) -> Consumer:
        consumer = DBConsumer(self.db, subscription, ack_flush=self.queue.ack_flush, prefetch=self.queue.db.prefetch)
        self._consumers.add(consumer)
        return consumer

    def control_channel(self) -> ControlChannel:
        return DBControlChannel(self.db, self.queue.db.control_poll)

    def _open_keys(self) -> UniqueKeys:
        return SqlKeys(self.url, self.engine)  # the items' own database, on their engine

    def _open_cancels(self) -> CancelStore:
        return SqlCancels(self.url, self.engine)

    def _remove(self, ids: list[str]) -> tuple[set[str], set[str] | None]:
        numbers = [int(i) for i in ids if i.isdigit()]
        with self.db.errors(), self.engine.begin() as conn:
            gone = delete(items).where(items.c.id.in_(numbers) & items.c.claimed_by.is_(None)).returning(items.c.id)
            removed = {str(i) for i in conn.execute(gone).scalars()}
            held = select(items.c.id).where(items.c.id.in_(numbers) & items.c.claimed_by.is_not(None))
            return removed, {str(i) for i in conn.execute(held).scalars()}

    def _remove_matching(self, site: str | None, transport: str | None) -> int | None:
        chosen = and_(
            items.c.claimed_by.is_(None),
            true() if site is None else items.c.site == site,
            true() if transport is None else items.c.transport == transport,
        )
        with self.db.errors(), self.engine.begin() as conn:
            removed: int = conn.execute(delete(items).where(chosen)).rowcount
            return removed

    def close(self) -> None:
        for consumer in list(self._consumers):
            try:
                consumer.close()  # a second close (the worker's own, first) does nothing
            except StatusqError as exc:  # the database is down: its claims expire instead
                log.warning("a consumer not closed cleanly: %s", exc)
        self._consumers.clear()
        self.close_keys()
        if self._one_by_one is not None:
            self._one_by_one.close()
        self.db.close()
