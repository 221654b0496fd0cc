"""statusq: run an application's background work off a message broker or a database.

The names here are the public interface for applications and plugin authors.
"""

from __future__ import annotations

from statusq.errors import (
    ConfigError,
    DataError,
    DecodeError,
    PluginError,
    QueueError,
    StatusqError,
)
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.plugins import PluginApi
from statusq.queues.base import QueueManager
from statusq.runtime import connect
from statusq.sites import current_site

__all__ = [
    "ConfigError",
    "DataError",
    "DecodeError",
    "PluginApi",
    "PluginError",
    "QueueError",
    "QueueHandler",
    "QueueItem",
    "QueueManager",
    "StatusqError",
    "connect",
    "current_site",
]
