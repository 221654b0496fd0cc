"""Enqueue inside the application's own transaction (``enqueue(..., connection=conn)``): the row
is written on the application's connection and committed, or rolled back, with the rest of its
work, so a worker sees the item only once the transaction that made it is committed.

``conn`` is an SQLAlchemy :class:`~sqlalchemy.engine.Connection` or a DB-API connection
(``sqlite3``, psycopg) to the same database as ``[queue] db_url``.  On PostgreSQL the wake-up
(NOTIFY) travels in the same transaction, so it is delivered at its commit, never before.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, Table, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from statusq.errors import InvalidArgument, QueueError
from statusq.queues.db.schema import NOTIFY_CHANNEL, channel_sql, items, notify_stmt


def _same_database(engine: Engine, conn: Connection) -> None:
    ours, theirs = engine.url, conn.engine.url
    if (ours.get_backend_name(), ours.host, ours.port, ours.database) != (
        theirs.get_backend_name(),
        theirs.host,
        theirs.port,
        theirs.database,
    ):
        where = theirs.render_as_string(hide_password=True)
        raise InvalidArgument("connection", f"is to {where}, not to the queue's database ([queue] db_url)")


def insert_rows(engine: Engine, conn: Any, rows: list[dict[str, Any]], transports: set[str]) -> list[str]:
    """Insert item ``rows`` on the application's connection, in its transaction (not committed
    here); their ids in order.  On PostgreSQL the consumers' wake-up goes in the same transaction."""
    notify = sorted(transports) if engine.dialect.name == "postgresql" else []
    return [str(i) for i in _execute(engine, conn, items, rows, returning=True, notify=notify)]


def write_rows(engine: Engine, conn: Any, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``table`` on the application's connection, in its transaction."""
    _execute(engine, conn, table, rows, returning=False, notify=[])


def _execute(
    engine: Engine, conn: Any, table: Table, rows: list[dict[str, Any]], *, returning: bool, notify: list[str]
) -> list[Any]:
    if isinstance(conn, Connection):
        _same_database(engine, conn)
        try:
            if returning:
                stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
                ids = list(conn.execute(stmt, rows).scalars().all())
            else:
                conn.execute(insert(table), rows)
                ids = []
            for transport in notify:
                conn.execute(notify_stmt(NOTIFY_CHANNEL, transport))
        except (DBAPIError, SQLAlchemyError) as exc:
            raise QueueError(f"enqueue on the application's connection: {_first_line(exc)}") from exc
        return ids
    if not hasattr(conn, "cursor"):
        raise InvalidArgument("connection", f"must be an SQLAlchemy or DB-API connection, not {type(conn).__name__}")
    if isinstance(conn, sqlite3.Connection) == (engine.dialect.name == "postgresql"):
        raise InvalidArgument("connection", f"is not to the queue's {engine.dialect.name} database")
    return _dbapi(engine, conn, table, rows, returning, notify)


def _dbapi(
    engine: Engine, conn: Any, table: Table, rows: list[dict[str, Any]], returning: bool, notify: list[str]
) -> list[Any]:
    """One INSERT per row, compiled by SQLAlchemy for the database's driver (its parameter
    style: ``?`` for sqlite3, ``%(name)s`` for psycopg)."""
    stmt = insert(table).values(rows[0])
    compiled = (stmt.returning(table.c.id) if returning else stmt).compile(dialect=engine.dialect)
    sql = str(compiled)
    ids = []
    cursor = conn.cursor()
    try:
        for row in rows:
            params = compiled.construct_params(row)
            order = compiled.positiontup
            bound = tuple(params[name] for name in order) if compiled.positional and order else params
            cursor.execute(sql, bound)
            if returning:
                ids.append(cursor.fetchone()[0])
        for transport in notify:
            cursor.execute(f"SELECT pg_notify({channel_sql(NOTIFY_CHANNEL)}, %s)", (transport,))
    except Exception as exc:
        if not type(exc).__module__.startswith(("sqlite3", "psycopg")):
            raise
        raise QueueError(f"enqueue on the application's connection: {_first_line(exc)}") from exc
    finally:
        cursor.close()
    return ids


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
