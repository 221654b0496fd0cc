"""PostgreSQL's LISTEN, for whoever wants to wake at once on a NOTIFY instead of at its next poll.

A connection of its own (psycopg, autocommitted): its descriptor becomes readable when a
notification arrives, so the worker's loop select()s on it.  Anything going wrong here only
costs promptness: the caller polls anyway, and carries on polling only.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)


def open_listener(engine: Engine, channel: str) -> Any:
    """A connection LISTENing on ``channel``, or None (logged) when that fails."""
    import psycopg  # noqa: PLC0415 -- psycopg: only a process on PostgreSQL loads it

    url = engine.url.set(drivername="postgresql")
    try:
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        conn.execute(f"LISTEN {channel}")
        return conn
    except psycopg.Error as exc:
        log.warning("LISTEN %s failed, falling back to polling only: %s", channel, exc)
        return None


def drain(conn: Any) -> tuple[Any, int]:
    """Read what woke ``conn``: (the connection, or None once it is lost; how many notifications)."""
    import psycopg  # noqa: PLC0415

    count = 0
    try:
        for _ in conn.notifies(timeout=0):
            count += 1
    except psycopg.Error as exc:
        log.warning("LISTEN connection lost, polling only from now on: %s", exc)
        conn.close()
        return None, count
    return conn, count
