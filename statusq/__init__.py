"""statusq: run an application's background work off a message broker or a database.

The names here are the public interface for applications and plugin authors.
"""

from __future__ import annotations

from statusq.errors import (
    BrokerFull,
    ConfigError,
    DataError,
    DecodeError,
    InvalidArgument,
    PluginError,
    QueueError,
    StatusqError,
)
from statusq.handler import QueueHandler
from statusq.item import Delivery, Item, Message, QueueItem
from statusq.middleware import Middleware, MiddlewareChain
from statusq.outcome import Failure, Outcome, Reject, Result, Retry
from statusq.plugins import PluginApi
from statusq.queues.base import QueueManager
from statusq.reporting.base import ErrorReporter
from statusq.runtime import connect
from statusq.sites import current_site

__all__ = [
    "BrokerFull",
    "ConfigError",
    "DataError",
    "DecodeError",
    "Delivery",
    "ErrorReporter",
    "Failure",
    "InvalidArgument",
    "Item",
    "Message",
    "Middleware",
    "MiddlewareChain",
    "Outcome",
    "PluginApi",
    "PluginError",
    "QueueError",
    "QueueHandler",
    "QueueItem",
    "QueueManager",
    "Reject",
    "Result",
    "Retry",
    "StatusqError",
    "connect",
    "current_site",
]
