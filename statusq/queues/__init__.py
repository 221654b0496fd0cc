"""Queue backends behind one interface; :func:`open_queue_manager` picks one from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from statusq.queues.base import BacklogRow, Consumer, DeadLetter, QueueManager, Subscription

if TYPE_CHECKING:
    from statusq.runtime import Runtime

__all__ = [
    "BacklogRow",
    "Consumer",
    "DeadLetter",
    "QueueManager",
    "Subscription",
    "open_queue_manager",
]


def open_queue_manager(runtime: Runtime) -> QueueManager:
    """The backend named by ``[queue] subsystem``; imported lazily so each pulls in only its own."""
    subsystem = runtime.config.queue.subsystem
    if subsystem == "inline":
        from statusq.queues.inline import InlineQueueManager

        return InlineQueueManager(runtime)
    if subsystem == "stomp":
        from statusq.queues.stomp import StompQueueManager

        return StompQueueManager(runtime)
    from statusq.queues.db import DBQueueManager

    return DBQueueManager(runtime.config)
