"""The in-memory backend (``[queue] subsystem = "memory"``); the inline backend is built on it."""

from __future__ import annotations

from statusq.queues.memory.broker import Clock, Inbox, MemoryBroker
from statusq.queues.memory.manager import MemoryConsumer, MemoryQueueManager

__all__ = ["Clock", "Inbox", "MemoryBroker", "MemoryConsumer", "MemoryQueueManager"]
