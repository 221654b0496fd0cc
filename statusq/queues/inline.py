"""The inline backend: ``enqueue`` runs the handler at once, in the caller's process.

For development and for tests of handlers: the same processor as a daemon (site switch, decode,
retry count, dead-lettering) with no broker and no waiting.  Retries run immediately, without
backoff; dead letters live in memory for the life of the manager.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from statusq.item import Delivery, Message
from statusq.outcome import Outcome
from statusq.queues.base import BacklogRow, Consumer, DeadLetter, QueueManager, Subscription
from statusq.retry import RetryPolicy

if TYPE_CHECKING:
    from statusq.runtime import Runtime


class _InlineConsumer(Consumer):
    """Records how the processor settled the one delivery it is given."""

    def __init__(self, manager: InlineQueueManager) -> None:
        self.manager = manager

    def fetch(self) -> Delivery | None:
        return None

    def ack(self, delivery: Delivery) -> None:
        self.manager.handled += 1

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        delivery.error = error

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.manager.dead.append(
            DeadLetter(
                id=delivery.id,
                site=delivery.site,
                transport=delivery.transport,
                attempts=delivery.attempt,
                error=reason,
                enqueued_at=delivery.enqueued_at,
                dead_at=time.time(),
                content_type=delivery.content_type,
                body=delivery.body,
                headers=delivery.headers,
            )
        )


class InlineQueueManager(QueueManager):
    def __init__(self, runtime: Runtime) -> None:
        from statusq.processor import ItemProcessor

        self.processor = ItemProcessor(runtime.registry, runtime.sites, RetryPolicy.from_config(runtime.config.queue))
        self.default_site = runtime.config.sites.default
        self._ids = itertools.count(1)
        self.handled = 0
        self.dead: list[DeadLetter] = []

    def _put(self, message: Message) -> str:
        return self._deliver(
            Delivery(
                id=f"inline-{next(self._ids)}",
                site=message.site,
                transport=message.transport,
                body=message.body,
                content_type=message.content_type,
                headers=message.headers,
                attempt=1,
                enqueued_at=time.time(),
                priority=message.priority,
            )
        )

    def _deliver(self, delivery: Delivery) -> str:
        consumer = _InlineConsumer(self)
        while self.processor.process(delivery, consumer).outcome is Outcome.RETRY:
            delivery.attempt += 1
        return delivery.id

    def subscribe(self, subscription: Subscription) -> Consumer:
        return _InlineConsumer(self)

    def backlog(self) -> list[BacklogRow]:
        rows: dict[tuple[str, str], BacklogRow] = {}
        for letter in self.dead:
            key = (letter.site, letter.transport)
            rows.setdefault(key, BacklogRow(*key)).dead += 1
        return [rows[key] for key in sorted(rows)]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return list(reversed(self.dead))[:limit]

    def _take(self, ids: Iterable[str] | None) -> list[DeadLetter]:
        wanted = None if ids is None else set(ids)
        taken = [d for d in self.dead if wanted is None or d.id in wanted]
        self.dead = [d for d in self.dead if d not in taken]
        return taken

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        taken = self._take(ids)
        for letter in taken:
            self._deliver(
                Delivery(
                    id=letter.id,
                    site=letter.site,
                    transport=letter.transport,
                    body=letter.body,
                    content_type=letter.content_type,
                    headers=letter.headers,
                    attempt=1,
                    enqueued_at=letter.enqueued_at,
                )
            )
        return len(taken)

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        return len(self._take(ids))
