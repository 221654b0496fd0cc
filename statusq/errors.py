"""One error hierarchy for statusq.

Library errors (stomp.py, lxml, sqlite, psycopg) are translated into these at the boundary, so
callers handle one family and never import a transport's exception types.
"""

from __future__ import annotations

import os


class StatusqError(Exception):
    """Base of every error statusq raises on purpose."""

    #: The process exit code the CLI uses when this error ends a command.
    exit_code: int = os.EX_SOFTWARE


class ConfigError(StatusqError):
    """A configuration file, key or value is wrong; names all three so the fix is obvious."""

    exit_code = os.EX_CONFIG

    def __init__(self, reason: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {reason}" if where else reason)


class PluginError(ConfigError):
    """A plugin failed to import or registered something invalid (found at start-up)."""


class DataError(StatusqError):
    """Input data (a CLI payload, an item body) cannot be used as given."""

    exit_code = os.EX_DATAERR


class InvalidArgument(DataError):
    """An argument of ``enqueue``/``enqueue_many`` is wrong (a negative delay, an ``eta`` in the
    past, a batch of none): nothing was enqueued.  Names the argument, and in a batch the item's
    index, so the caller can point at what to fix."""

    def __init__(self, argument: str, reason: str, *, index: int | None = None) -> None:
        self.argument = argument
        self.reason = reason
        self.index = index
        where = f"items[{index}]: " if index is not None else ""
        super().__init__(f"{where}{argument}: {reason}")

    def at(self, index: int) -> InvalidArgument:
        """The same error, said of item ``index`` of a batch."""
        return InvalidArgument(self.argument, self.reason, index=index)


class DecodeError(DataError):
    """An item body does not decode with its content type; retrying cannot help."""


class QueueError(StatusqError):
    """The queue backend (database or broker) failed."""

    exit_code = os.EX_UNAVAILABLE


class ConnectionClosed(QueueError):
    """The connection to the backend dropped; the caller may reconnect."""


class BrokerFull(QueueError):
    """The broker refused the call's items because it is full (a memory, store or disk limit was
    reached and stayed so for the broker's grace time: nothing of that call was enqueued), or it
    is throttling producers (alive, but no receipt within ``receipt_timeout``: RabbitMQ's memory
    and disk alarms; what was sent may still be enqueued once it lets go).  Try again later; a
    backlog that drains frees it.
    Caught apart from other queue errors so an application can shed or delay load instead of
    failing the web request it came from."""


class Unsupported(QueueError):
    """The backend cannot do this (see its admin's declared capabilities)."""

    exit_code = os.EX_UNAVAILABLE


class ItemTimeLimitExceeded(BaseException):
    """Raised inside a handler that ran past the per-item time limit.

    A BaseException so that a handler's ``except Exception`` cannot swallow it.
    """


class ThreadTimeLimitExceeded(ItemTimeLimitExceeded):
    """The time limit as raised into a pool thread from outside (by class, so no arguments)."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("handler ran past the time limit (interrupted in its thread)",)))
