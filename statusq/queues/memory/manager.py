"""The memory backend's parts: a real queue inside one process (as Dramatiq's StubBroker), for
tests and embedding.  A producer and a daemon in different processes do not share it.  Several
managers share items when they are given the same :class:`MemoryBroker`, the one link their
producer, consumers, control channels and admin all work on.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable

from statusq.commands import parse_command, sign
from statusq.config import Config, StompConfig
from statusq.errors import QueueError
from statusq.item import Delivery, Message
from statusq.queues.base import (
    Admin,
    BacklogRow,
    Capability,
    Consumer,
    ControlChannel,
    ControlMessage,
    DeadLetter,
    QueueManager,
    Subscription,
)
from statusq.queues.cancels import CancelStore
from statusq.queues.keys import UniqueKeys
from statusq.queues.memory.broker import Inbox, MemoryBroker


class MemoryConsumer(Consumer):
    """Takes one item at a time, like the database consumer; ``inbox`` None: no wake-up fd."""

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

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        self.broker.defer(delivery, delay)

    def release(self) -> None:
        self.broker.release(self.owner)

    def close(self) -> None:
        self.release()
        if self.inbox is not None:
            self.broker.detach(self.inbox)
            self.inbox = None


class MemoryControlChannel(ControlChannel):
    """The broker's per-subscriber inbox of control messages."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.inbox: Inbox | None = broker.listen()

    def filenos(self) -> list[int]:
        return [self.inbox.fileno()] if self.inbox is not None else []

    def drain_wakeups(self) -> None:
        if self.inbox is not None:
            self.inbox.drain()

    def pending(self) -> bool:
        return self.inbox is not None and bool(self.inbox.control)

    def take(self) -> list[ControlMessage]:
        if self.inbox is None:
            return []
        taken = []
        while self.inbox.control:  # popleft, not a copy and clear: broadcast() may run on a thread
            taken.append(self.inbox.control.popleft())
        return taken

    def close(self) -> None:
        if self.inbox is not None:
            self.broker.detach(self.inbox)
            self.inbox = None


class MemoryAdmin(Admin):
    """Everything, counts included: the broker's state is at hand."""

    def __init__(self, broker: MemoryBroker, stomp: StompConfig) -> None:
        self.broker = broker
        self.stomp = stomp  # the control channel's name and secret, as on a broker
        control = {Capability.CONTROL} if stomp.control_channel else set()
        self.capabilities = frozenset(
            {
                Capability.BACKLOG,
                Capability.DEAD_LETTERS,
                Capability.REQUEUE,
                Capability.PURGE,
                Capability.RELEASE_CLAIMS,
                *control,
            }
        )

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

    def send_control(self, text: str) -> None:
        """To every control channel of the broker, with the headers a STOMP broker would deliver."""
        parse_command(text)  # refuse a bad command here, not in every worker's log
        if not self.stomp.control_channel:
            raise QueueError("no control channel configured ([queue.stomp] control_channel)")
        headers = {"destination": self.stomp.control_channel, "content-type": "text/plain"}
        if self.stomp.control_secret:
            headers.update(sign(text, self.stomp.control_secret))
        self.broker.broadcast(headers, text.encode())


class MemoryQueueManager(QueueManager):
    """``[queue] subsystem = "memory"``; a fresh broker unless one is given to share."""

    def __init__(self, config: Config, broker: MemoryBroker | None = None) -> None:
        self.config = config
        self.default_site = config.sites.default
        self.max_body = config.queue.max_body
        self.default_priorities = config.default_priorities()
        self.broker = broker if broker is not None else MemoryBroker(claim_timeout=config.queue.claim_timeout)
        self.admin = MemoryAdmin(self.broker, config.queue.stomp)
        self.clock = self.broker.clock  # delays, etas and expiries on the broker's (maybe fake) clock
        self._opened: list[Consumer | ControlChannel] = []

    def _put(self, message: Message) -> str:
        return self.broker.put(message)

    def _put_many(self, messages: list[Message]) -> list[str]:
        return self.broker.put_many(messages)

    def _open_keys(self) -> UniqueKeys:
        return self.broker.keys  # the broker's: shared by every manager of the broker

    def _open_cancels(self) -> CancelStore:
        return self.broker.cancels

    def _remove(self, ids: list[str]) -> tuple[set[str], set[str] | None]:
        return self.broker.remove(ids)

    def _remove_matching(self, site: str | None, transport: str | None) -> int | None:
        return self.broker.remove_matching(site, transport)

    def subscribe(self, subscription: Subscription) -> Consumer:
        consumer = MemoryConsumer(self.broker, subscription, self.broker.attach())
        self._opened.append(consumer)
        return consumer

    def control_channel(self) -> ControlChannel | None:
        if not self.config.queue.stomp.control_channel:
            return None
        channel = MemoryControlChannel(self.broker)
        self._opened.append(channel)
        return channel

    def close(self) -> None:
        """Close the consumers and channels this manager made; the broker (maybe shared) keeps
        its items."""
        opened, self._opened = self._opened, []
        for one in opened:
            one.close()
