"""The in-memory backend (``[queue] subsystem = "memory"``); the inline backend is built on it."""

from __future__ import annotations

from statusq.queues.memory.broker import Clock, Inbox, MemoryBroker
from statusq.queues.memory.manager import MemoryAdmin, MemoryConsumer, MemoryControlChannel, MemoryQueueManager

__all__ = [
    "Clock",
    "Inbox",
    "MemoryAdmin",
    "MemoryBroker",
    "MemoryConsumer",
    "MemoryControlChannel",
    "MemoryQueueManager",
]
