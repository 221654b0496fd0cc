"""The database's fast ways in: on PostgreSQL one round trip for one item, one COPY for a
batch; on SQLite one ``executemany`` for a batch.

Why not the generic path: one item through ``engine.begin()`` cost BEGIN, the INSERT, a
``SELECT pg_notify``, and COMMIT, four round trips where one does (an INSERT and its NOTIFY in
one statement, committed on its own).  That statement through an SQLAlchemy connection of an
autocommit pool still cost 230 µs of the producer's CPU per item (checkout, execution context,
result metadata, checkin), more than PgQueuer's whole enqueue (120 µs) and most of a commit's
wall time here (250-300 µs): :class:`OneByOne` runs it on psycopg's own connections, 55-70 µs
(docs/speed.md, per-item enqueue on PostgreSQL).  A batch through SQLAlchemy's
insertmanyvalues built a SQL text of every row that the driver then parsed again (2.7 s of a
10,000-item ``enqueue_many`` went to splitting that string).  Rows as one JSON document read by
``json_to_recordset`` came next (bodies in base64): 4-5 µs of the producer's CPU per row and the
server's JSON parsing.  Now a batch is one binary ``COPY`` (psycopg 3 writes each row in C,
bodies as they are): under 1 µs per row here, and the server does least work for it.  The ids
are drawn from the sequence first and handed out in ascending order, so they come back in the
order the items were given.

On SQLite, SQLAlchemy's ``RETURNING`` in parameter order ran one INSERT per row, each through
its compiler's parameter processing (about 12 µs a row); sqlite3's own ``executemany`` runs the
prepared statement per row in C.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import URL, Connection, text
from sqlalchemy.exc import DBAPIError

from statusq.errors import QueueError
from statusq.queues.db.schema import NOTIFY_CHANNEL, channel_sql, items

#: The columns a producer writes, with the PostgreSQL types of their binary COPY format.
_COLUMNS = {
    "site": "text",
    "transport": "text",
    "priority": "int2",
    "content_type": "text",
    "body": "bytea",
    "headers": "text",
    "attempts": "int4",
    "enqueued_at": "float8",
    "available_at": "float8",
    "held": "int2",
    "expires_at": "float8",
}
#: What a batch's COPY writes, in order, with the types of its binary format.
COPY_COLUMNS = ("id", *_COLUMNS)
_COPY_TYPES = ["int8", *_COLUMNS.values()]
_COPY = f"COPY {items.name} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
#: One item and its NOTIFY in one statement; ``$2``, the transport, is also the NOTIFY's payload.
_ONE = (
    f"WITH added AS (INSERT INTO {items.name} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(f'${n}' for n in range(1, len(_COLUMNS) + 1))}) RETURNING id) "
    f"SELECT id, pg_notify({channel_sql(NOTIFY_CHANNEL)}, $2) FROM added"
)
#: ``n`` ids from the sequence, as one text value: 10,000 rows of one id each took longer to
#: fetch than the insert itself.
_IDS = text(
    f"SELECT string_agg(nextval(pg_get_serial_sequence('{items.name}', 'id'))::text, ',') FROM generate_series(1, :n)"
)


class OneByOne:
    """PostgreSQL's one-item enqueue: :data:`_ONE` on psycopg connections of its own, in
    autocommit, so one round trip writes the row, queues its NOTIFY and commits, under the
    server's ``synchronous_commit`` (with the default, on, what :meth:`insert` returns is on
    disk).  Each connection keeps one cursor (a ``RawCursor``: ``$n`` placeholders, so the
    transport is sent once for both) and the statement prepared on the server.

    Idle connections wait in a list (``pop`` and ``append`` are atomic: threads may enqueue at
    once, each on a connection of its own); at most ``keep`` are kept.  A process forked from
    ours drops its parent's unclosed (closing one would end the parent's session; psycopg does
    not close a connection of another process when it is collected) and opens its own."""

    def __init__(self, url: URL, keep: int = 2) -> None:
        import psycopg  # noqa: PLC0415 -- only a process on PostgreSQL loads it

        self._psycopg = psycopg
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._keep = keep
        self._idle: list[Any] = []  # a cursor per idle connection
        self._pid = os.getpid()

    def insert(self, values: Sequence[Any]) -> int:
        """Write one row (the values of :data:`COPY_COLUMNS` after ``id``); its id.  A
        connection found dead (a server restart) is replaced and the row tried once more: had
        the server committed the first just before it went away, the item is queued twice,
        never lost.  A driver error is raised as SQLAlchemy's, as from any statement."""
        self._forget_forked()
        try:
            for attempt in (1, 2):
                cursor = self._checkout()
                try:
                    cursor.execute(_ONE, values, prepare=True)
                    item_id: int = cursor.fetchone()[0]
                except self._psycopg.Error:
                    lost = cursor.connection.broken
                    self._checkin(cursor, lost)
                    if lost and attempt == 1:
                        continue
                    raise
                self._checkin(cursor)
                return item_id
        except self._psycopg.Error as exc:
            raise DBAPIError.instance(_ONE, None, exc, self._psycopg.Error) from exc
        raise AssertionError("unreachable")

    def _checkout(self) -> Any:
        try:
            return self._idle.pop()
        except IndexError:
            return self._psycopg.RawCursor(self._psycopg.connect(self._conninfo, autocommit=True))

    def _checkin(self, cursor: Any, lost: bool = False) -> None:
        if lost or len(self._idle) >= self._keep:
            cursor.connection.close()
        else:
            self._idle.append(cursor)

    def _forget_forked(self) -> None:
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()

    def close(self) -> None:
        self._forget_forked()
        idle, self._idle = self._idle, []
        for cursor in idle:
            cursor.connection.close()


@contextmanager
def _driver_errors(dbapi: Any, statement: str) -> Iterator[None]:
    """The errors of ``dbapi`` (the driver's module) raised as SQLAlchemy's, as from any
    statement: the caller's ``db_errors`` then makes them a QueueError naming the database."""
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def insert_many(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Every row in one binary COPY, in the caller's transaction; ``rows`` hold the values of
    :data:`COPY_COLUMNS` after ``id``.  Ids are drawn first and given in ascending order (so
    FIFO holds within the batch); the caller notifies and commits.  A driver error is raised as
    SQLAlchemy's, as from any statement (the COPY runs on the driver's own cursor)."""
    ids = sorted(int(item_id) for item_id in conn.execute(_IDS, {"n": len(rows)}).scalar_one().split(","))
    driver: Any = conn.connection.driver_connection  # psycopg's own: COPY is not in DB-API
    with _driver_errors(conn.dialect.loaded_dbapi, _COPY), driver.cursor() as cursor, cursor.copy(_COPY) as copy:
        copy.set_types(_COPY_TYPES)
        write = copy.write_row
        for item_id, row in zip(ids, rows, strict=True):
            write((item_id, *row))
    return ids


_SQLITE_FIRST = text(
    f"INSERT INTO {items.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + name for name in _COLUMNS)}) "
    "RETURNING id"
)
_SQLITE_REST = f"INSERT INTO {items.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def insert_many_sqlite(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Every row (the values of :data:`COPY_COLUMNS` after ``id``) in the caller's transaction:
    the first through SQLAlchemy, which begins the transaction (and with it SQLite's write
    lock: no other connection can add a row until it ends), the rest in one ``executemany``.
    The table is AUTOINCREMENT, so each new id is the one before plus one: the ids are the
    first's and the ones after it, checked against the last one SQLite handed out."""
    first: int = conn.execute(_SQLITE_FIRST, dict(zip(_COLUMNS, rows[0], strict=True))).scalar_one()
    if len(rows) == 1:
        return [first]
    driver: Any = conn.connection.driver_connection
    with _driver_errors(conn.dialect.loaded_dbapi, _SQLITE_REST):
        cursor = driver.cursor()
        try:
            cursor.executemany(_SQLITE_REST, rows[1:])
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        finally:
            cursor.close()
    if last - first != len(rows) - 1:
        raise QueueError(f"SQLite gave ids {first}..{last} to {len(rows)} rows, not one after another")
    return list(range(first, last + 1))
