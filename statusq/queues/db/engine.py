"""Engines for the two databases we support, with the settings each needs for a work queue."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from statusq.errors import ConfigError


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (status, producers) work while a worker holds the write lock; the busy
    # timeout makes competing workers wait for the lock rather than fail.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(url_text: str) -> Engine:
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", key="queue.db_url") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit at the driver level: SQLAlchemy's begin() then issues a real BEGIN, and a
        # claim's single UPDATE takes the write lock at once instead of upgrading a read lock.
        engine = create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": 30, "isolation_level": None},
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        # psycopg 3 is what we ship; a bare postgresql:// URL would ask SQLAlchemy for psycopg2.
        return create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    raise ConfigError(
        f"unsupported database {backend!r} (use sqlite:///PATH or postgresql://...)",
        key="queue.db_url",
    )
