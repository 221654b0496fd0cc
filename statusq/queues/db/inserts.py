"""The database's fast ways in: on PostgreSQL one round trip for one item, one COPY for a
batch; on SQLite one ``executemany`` for a batch.

Why not the generic path: one item through ``engine.begin()`` cost BEGIN, the INSERT, a
``SELECT pg_notify``, and COMMIT, four round trips where one does (an INSERT and its NOTIFY in
one statement, committed on its own).  A batch through SQLAlchemy's insertmanyvalues built a SQL
text of every row that the driver then parsed again (2.7 s of a 10,000-item ``enqueue_many``
went to splitting that string).  Rows as one JSON document read by ``json_to_recordset`` came
next (bodies in base64): 4-5 µs of the producer's CPU per row and the server's JSON parsing.
Now a batch is one binary ``COPY`` (psycopg 3 writes each row in C, bodies as they are): under
1 µs per row here, and the server does least work for it.  The ids are drawn from the sequence
first and handed out in ascending order, so they come back in the order the items were given.

On SQLite, SQLAlchemy's ``RETURNING`` in parameter order ran one INSERT per row, each through
its compiler's parameter processing (about 12 µs a row); sqlite3's own ``executemany`` runs the
prepared statement per row in C.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from statusq.errors import QueueError
from statusq.queues.db.schema import NOTIFY_CHANNEL, items

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
_ONE = text(
    f"WITH added AS (INSERT INTO {items.name} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _COLUMNS)}) RETURNING id) "
    f"SELECT id, pg_notify('{NOTIFY_CHANNEL}', :transport) FROM added"
)
#: ``n`` ids from the sequence, as one text value: 10,000 rows of one id each took longer to
#: fetch than the insert itself.
_IDS = text(
    f"SELECT string_agg(nextval(pg_get_serial_sequence('{items.name}', 'id'))::text, ',') FROM generate_series(1, :n)"
)


def insert_one(conn: Connection, row: dict[str, Any]) -> int:
    """The row and its NOTIFY in one statement (the same text each time: prepared once by the
    server, nothing for SQLAlchemy to compile); ``conn`` in autocommit, so one round trip."""
    item_id: int = conn.execute(_ONE, row).one()[0]
    return item_id


def autocommit_engine(engine: Engine) -> Engine:
    """The producer's own pool for :func:`insert_one`: every connection in autocommit, and no
    ping before each use (a round trip of its own).  A connection the server dropped (a
    restart) fails once; :meth:`~statusq.queues.db.manager.DBQueueManager._put` then tries
    again on a fresh one."""
    return create_engine(engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=2)


def _driver_errors(conn: Connection, statement: str) -> Any:
    """The driver's errors raised as SQLAlchemy's, as from any statement: the caller's
    ``db_errors`` then makes them a QueueError naming the database."""
    dbapi = conn.dialect.loaded_dbapi

    @contextmanager
    def translated() -> Iterator[None]:
        try:
            yield
        except dbapi.Error as exc:
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc

    return translated()


def insert_many(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Every row in one binary COPY, in the caller's transaction; ``rows`` hold the values of
    :data:`COPY_COLUMNS` after ``id``.  Ids are drawn first and given in ascending order (so
    FIFO holds within the batch); the caller notifies and commits.  A driver error is raised as
    SQLAlchemy's, as from any statement (the COPY runs on the driver's own cursor)."""
    ids = sorted(int(item_id) for item_id in conn.execute(_IDS, {"n": len(rows)}).scalar_one().split(","))
    driver: Any = conn.connection.driver_connection  # psycopg's own: COPY is not in DB-API
    with _driver_errors(conn, _COPY), driver.cursor() as cursor, cursor.copy(_COPY) as copy:
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
    with _driver_errors(conn, _SQLITE_REST):
        cursor = driver.cursor()
        try:
            cursor.executemany(_SQLITE_REST, rows[1:])
            last = cursor.execute("SELECT last_insert_rowid()").fetchone()[0]
        finally:
            cursor.close()
    if last - first != len(rows) - 1:
        raise QueueError(f"SQLite gave ids {first}..{last} to {len(rows)} rows, not one after another")
    return list(range(first, last + 1))
