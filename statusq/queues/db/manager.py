"""The database backend: a work queue in one table, for SQLite or PostgreSQL.

The manager is the producer (an INSERT, and a NOTIFY on PostgreSQL); each worker's
:class:`~statusq.queues.db.consumer.DBConsumer` claims and settles, the
:class:`~statusq.queues.db.admin.DBAdmin` counts and manages dead letters.  All three work on
one :class:`~statusq.queues.db.database.Database` (the engine).
"""

from __future__ import annotations

import json
import time

from sqlalchemy import insert

from statusq.config import Config
from statusq.item import Message
from statusq.queues.base import Consumer, QueueManager, Subscription
from statusq.queues.db.admin import DBAdmin
from statusq.queues.db.consumer import DBConsumer
from statusq.queues.db.database import Database
from statusq.queues.db.schema import items

__all__ = ["DBQueueManager"]


class DBQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.url = config.db_url
        self.default_site = config.sites.default
        self.default_priorities = config.default_priorities()
        self.db = Database(self.url, config.queue.claim_timeout)
        self.engine = self.db.engine
        self.admin = DBAdmin(self.db)

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
        with self.db.errors(), self.engine.begin() as conn:
            item_id = conn.execute(insert(items).values(row).returning(items.c.id)).scalar_one()
            self.db.notify(conn, message.transport)
        return str(item_id)

    def subscribe(self, subscription: Subscription) -> Consumer:
        return DBConsumer(self.db, subscription)

    def close(self) -> None:
        self.db.close()
