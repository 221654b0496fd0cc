"""The memory backend's manager and consumer: a real queue inside one process (as Dramatiq's
StubBroker), for tests and embedding.  A producer and a daemon in different processes do not share
it.  Several managers share items when they are given the same :class:`MemoryBroker`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable

from statusq.commands import SECRET_HEADER, parse_command
from statusq.config import Config
from statusq.errors import QueueError
from statusq.item import Delivery, Message
from statusq.queues.base import BacklogRow, Consumer, DeadLetter, QueueManager, Subscription
from statusq.queues.memory.broker import ControlMessage, Inbox, MemoryBroker


class MemoryConsumer(Consumer):
    """Takes one item at a time, like the database consumer; ``inbox`` None: no control, no fd."""

    def __init__(self, broker: MemoryBroker, subscription: Subscription, inbox: Inbox | None) -> None:
        self.broker = broker
        self.subscription = subscription
        self.inbox = inbox
        self.owner = f"memory:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    @property
    def claim_owner(self) -> str:
        return self.owner

    def filenos(self) -> list[int]:
        return [self.inbox.fileno()] if self.inbox is not None else []

    def drain_wakeups(self) -> None:
        if self.inbox is not None:
            self.inbox.drain()

    def fetch(self) -> Delivery | None:
        return self.broker.claim(self.subscription, self.owner)

    def ack(self, delivery: Delivery) -> None:
        self.broker.ack(delivery)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.broker.retry(delivery, delay, error)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.broker.dead_letter(delivery, reason)

    def control_pending(self) -> bool:
        return self.inbox is not None and bool(self.inbox.control)

    def take_control(self) -> list[ControlMessage]:
        if self.inbox is None:
            return []
        taken = []
        while self.inbox.control:  # popleft, not a copy and clear: broadcast() may run on a thread
            taken.append(self.inbox.control.popleft())
        return taken

    def release(self) -> None:
        self.broker.release(self.owner)

    def close(self) -> None:
        self.release()
        if self.inbox is not None:
            self.broker.detach(self.inbox)
            self.inbox = None


class MemoryQueueManager(QueueManager):
    """``[queue] subsystem = "memory"``; a fresh broker unless one is given to share."""

    def __init__(self, config: Config, broker: MemoryBroker | None = None) -> None:
        self.config = config
        self.default_site = config.sites.default
        self.broker = broker if broker is not None else MemoryBroker(claim_timeout=config.queue.claim_timeout)
        self._consumers: list[MemoryConsumer] = []

    def _put(self, message: Message) -> str:
        return self.broker.put(
            site=message.site,
            transport=message.transport,
            priority=message.priority,
            content_type=message.content_type,
            body=message.body,
            headers=message.headers,
        )

    def subscribe(self, subscription: Subscription) -> Consumer:
        consumer = MemoryConsumer(self.broker, subscription, self.broker.attach())
        self._consumers.append(consumer)
        return consumer

    def send_control(self, text: str) -> None:
        """To every consumer of the broker, with the headers a STOMP broker would deliver."""
        parse_command(text)  # refuse a bad command here, not in every worker's log
        stomp = self.config.queue.stomp
        if not stomp.control_channel:
            raise QueueError("no control channel configured ([queue.stomp] control_channel)")
        headers = {"destination": stomp.control_channel, "content-type": "text/plain"}
        if stomp.control_secret:
            headers[SECRET_HEADER] = stomp.control_secret
        self.broker.broadcast(headers, text.encode())

    def backlog(self) -> list[BacklogRow]:
        return self.broker.backlog()

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.broker.dead_letters(limit)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        return len(self.broker.requeue_dead(ids))

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        return self.broker.purge_dead(ids)

    def release_claims(self, owner: str, reason: str) -> int:
        return self.broker.release_claims(owner, reason)

    def close(self) -> None:
        """Close the consumers this manager made; the broker (maybe shared) keeps its items."""
        consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.close()
