"""One worker's consumer on the database backend.

It takes one item at a time (no prefetch, so nothing is held that another worker could run), and
on PostgreSQL it LISTENs so that an enqueue wakes it at once instead of at the next poll.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from statusq.item import Delivery
from statusq.names import worker_name
from statusq.queues.base import Consumer, Subscription
from statusq.queues.db.schema import NOTIFY_CHANNEL

if TYPE_CHECKING:
    from statusq.queues.db.manager import DBQueueManager

log = logging.getLogger(__name__)


class DBConsumer(Consumer):
    def __init__(self, manager: DBQueueManager, subscription: Subscription) -> None:
        self.manager = manager
        self.subscription = subscription
        self.worker = worker_name()
        self._listen: Any = None
        if manager.is_postgres:
            self._listen = self._open_listener()

    def _open_listener(self) -> Any:
        import psycopg  # noqa: PLC0415 -- psycopg: only a consumer on PostgreSQL loads it

        url = self.manager.engine.url.set(drivername="postgresql")
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

    def fetch(self) -> Delivery | None:
        return self.manager.claim(self.subscription, self.worker)

    def ack(self, delivery: Delivery) -> None:
        self.manager.ack(delivery)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.manager.retry(delivery, delay, error)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.manager.dead_letter(delivery, reason)

    def close(self) -> None:
        if self._listen is not None:
            self._listen.close()
            self._listen = None
