"""Where log lines go and what they look like: ``[log]`` (level, format, target, per-logger levels).

Why JSON: a fleet's logs are read by Loki or ELK, which index fields, not sentences; a line that
says which item (site, transport, id, attempt) and which worker it was about can be found again.
Why a journald writer of our own: the native protocol is a datagram of ``KEY=value`` lines, a few
lines of code, where python-systemd would be a compiled dependency for one function.

The item fields come from :data:`current_item`, set by :class:`ItemLogContext` (a middleware)
around each item, in the thread that runs it.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import struct
import sys
import time
from contextvars import ContextVar
from typing import Any

from statusq.config import LogConfig
from statusq.item import Delivery
from statusq.middleware import Middleware
from statusq.outcome import Result

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: The item in hand in this thread (or task): its fields for every log line written meanwhile.
current_item: ContextVar[dict[str, Any] | None] = ContextVar("statusq_log_item", default=None)

_PRIORITIES = {"CRITICAL": 2, "ERROR": 3, "WARNING": 4, "INFO": 6, "DEBUG": 7}  # syslog's


class ItemLogContext(Middleware):
    """Puts the item in hand into :data:`current_item` for the lines logged while it runs."""

    def before_item(self, delivery: Delivery) -> None:
        current_item.set(
            {"site": delivery.site, "transport": delivery.transport, "id": delivery.id, "attempt": delivery.attempt}
        )

    def after_item(self, delivery: Delivery, result: Result) -> None:
        current_item.set(None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the worker (if
    any), the item's fields while one is in hand, and the traceback as text."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if self.worker is not None:
            line["worker"] = self.worker
        item = current_item.get()
        if item:
            line.update(item)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class JournalHandler(logging.Handler):
    """systemd-journald's native protocol: one datagram per record, ``KEY=value`` fields (a value
    holding a newline is sent length-prefixed, as the protocol asks)."""

    def __init__(self, address: str, identifier: str = "statusq") -> None:
        super().__init__()
        self.address = address
        self.identifier = identifier
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": self.format(record),
                "PRIORITY": str(_PRIORITIES.get(record.levelname, 6)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
            }
            item = current_item.get()
            if item:
                fields.update({f"STATUSQ_{key.upper()}": str(value) for key, value in item.items()})
            self.sock.sendto(b"".join(_journal_field(k, v) for k, v in fields.items()), self.address)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def _journal_field(key: str, value: str) -> bytes:
    data = value.encode("utf-8", "replace")
    if b"\n" not in data:
        return key.encode() + b"=" + data + b"\n"
    return key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"


def _handler(config: LogConfig) -> logging.Handler:
    if config.target == "journald":
        return JournalHandler(config.journal_socket)
    if config.target == "syslog":
        where = config.syslog_address
        host, _, port = where.rpartition(":")
        address: str | tuple[str, int] = where if where.startswith("/") else (host, int(port))
        return logging.handlers.SysLogHandler(address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    return logging.StreamHandler(sys.stderr)


def configure(config: LogConfig, *, worker: int | None = None) -> None:
    """Replace the root logger's handlers by the one ``config`` asks for."""
    handler = _handler(config)
    if config.format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        name = "%(name)s" if worker is None else f"%(name)s[worker {worker}]"
        prefix = "statusq: " if config.target == "syslog" else ""  # the tag syslog shows
        handler.setFormatter(logging.Formatter(prefix + TEXT_FORMAT.replace("%(name)s", name, 1)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(config.level)
    for name, level in config.levels.items():
        logging.getLogger(name).setLevel(level)
