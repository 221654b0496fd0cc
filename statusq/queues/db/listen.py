"""PostgreSQL's LISTEN, for whoever wants to wake at once on a NOTIFY instead of at its next poll.

A connection of its own (psycopg, autocommitted): its descriptor becomes readable when a
notification arrives, so the worker's loop select()s on it.  Anything going wrong here only
costs promptness: the caller polls anyway, and carries on polling only.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from statusq.queues.db.schema import channel_sql

log = logging.getLogger(__name__)


def open_listener(engine: Engine, base: str) -> Any:
    """A connection LISTENing on ``base``'s channel of its schema (the one its URL's search_path
    gives, as for the producers: :func:`~statusq.queues.db.schema.channel_sql`), or None (logged)
    when that fails."""
    import psycopg  # noqa: PLC0415 -- psycopg: only a process on PostgreSQL loads it

    url = engine.url.set(drivername="postgresql")
    try:
        conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        (channel,) = conn.execute(f"SELECT {channel_sql(base)}").fetchall()[0]
        conn.execute(f'LISTEN "{channel}"')  # a name of ours: the base and hex digits
        return conn
    except psycopg.Error as exc:
        log.warning("LISTEN on %s failed, falling back to polling only: %s", base, exc)
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
