"""The inline backend: ``enqueue`` runs the handler at once, in the caller's process.

For development and for tests of handlers: the memory backend, plus the same processor as a daemon
(site switch, decode, retry count, dead-lettering) run on each item as it is enqueued.  Retries
run immediately, without backoff; dead letters live in memory for the life of the manager.
A ``delay`` or ``eta`` is checked and then ignored: the item runs at once, as Celery's eager mode
does, so code that delays work runs unchanged in development and tests.  ``expires`` is checked
(it must lie ahead), so an inline item never expires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from statusq.config import Config, StompConfig
from statusq.item import Delivery
from statusq.queues.base import Consumer, DeadLetter, Subscription
from statusq.queues.memory import MemoryAdmin, MemoryBroker, MemoryConsumer, MemoryQueueManager

#: Handles one delivery and settles it on the consumer (``ItemProcessor.process``).
Process = Callable[[Delivery, Consumer], object]


class InlineQueueManager(MemoryQueueManager):
    def __init__(self, config: Config, process: Process, broker: MemoryBroker | None = None) -> None:
        if broker is None:
            broker = MemoryBroker(claim_timeout=config.queue.claim_timeout, id_prefix="inline-")
        super().__init__(config, broker)
        self.process = process
        # Not attached to the broker: it takes items by id, and wants no wake-ups.
        self._runner = MemoryConsumer(self.broker, Subscription(), None)
        self.admin = InlineAdmin(self.broker, config.queue.stomp, self._run)

    @property
    def handled(self) -> int:
        """Items done for good (acked)."""
        return self.broker.acked

    @property
    def dead(self) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return self.broker.dead_letters(limit=len(self.broker.dead))[::-1]

    def _put_done(self, ids: list[str]) -> None:
        # After the put, not inside it: a keyed item's key is bound to its id by then, so its
        # handler's success is recorded against it.
        for item_id in ids:
            self._run(item_id)

    def _run(self, item_id: str) -> None:
        """Until it is acked or dead: a retry is claimed again at once, whatever its delay."""
        while (delivery := self.broker.claim_id(item_id, self._runner.owner)) is not None:
            self.process(delivery, self._runner)


class InlineAdmin(MemoryAdmin):
    """A requeued dead letter runs at once, as an enqueued item does."""

    def __init__(self, broker: MemoryBroker, stomp: StompConfig, run: Callable[[str], None]) -> None:
        super().__init__(broker, stomp)
        self.run = run

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        requeued = self.broker.requeue_dead(ids)
        for item_id in requeued:
            self.run(item_id)
        return len(requeued)
