"""Queue backends behind one interface; :func:`statusq.runtime.open_queue_manager` picks one from
the config."""

from __future__ import annotations

from statusq.queues.base import (
    Admin,
    BacklogRow,
    Capability,
    Consumer,
    ControlChannel,
    DeadLetter,
    QueueManager,
    Subscription,
)

__all__ = [
    "Admin",
    "BacklogRow",
    "Capability",
    "Consumer",
    "ControlChannel",
    "DeadLetter",
    "QueueManager",
    "Subscription",
]
