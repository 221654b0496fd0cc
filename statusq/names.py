"""Checks for names that end up in destinations, SQL and log lines."""

from __future__ import annotations

import os
import re
import socket
import uuid

from statusq import defaults
from statusq.errors import DataError

_NAME = re.compile(defaults.NAME_PATTERN)
_SITE = re.compile(defaults.SITE_PATTERN)


def check_transport(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(f"invalid transport {name!r} (lowercase letters, digits and '_.-', max 64)")
    return name


def check_site(name: str) -> str:
    if not isinstance(name, str) or not _SITE.match(name):
        raise DataError(f"invalid site {name!r} (letters, digits and '_.-', max 255)")
    return name


def check_priority(priority: int | None) -> int:
    if priority is None:
        return defaults.DEFAULT_PRIORITY
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise DataError(f"invalid priority {priority!r} (an integer from 0 to 9)")
    return priority


def check_headers(headers: dict[str, str] | None) -> dict[str, str]:
    if headers is None:
        return {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise DataError("headers must map strings to strings")
    return dict(headers)


def worker_name() -> str:
    """Unique per process start, so a restarted pid never inherits an old claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
