"""PostgreSQL's fast ways in: one round trip for one item, one COPY for a batch.

Why not the generic path: one item through ``engine.begin()`` cost BEGIN, the INSERT, a
``SELECT pg_notify``, and COMMIT, four round trips where one does (an INSERT and its NOTIFY in
one statement, committed on its own).  A batch through SQLAlchemy's insertmanyvalues built a SQL
text of every row that the driver then parsed again (2.7 s of a 10,000-item ``enqueue_many``
went to splitting that string).  Rows as one JSON document read by ``json_to_recordset`` came
next (bodies in base64): 4-5 µs of the producer's CPU per row and the server's JSON parsing.
Now a batch is one binary ``COPY`` (psycopg 3 writes each row in C, bodies as they are): under
1 µs per row here, and the server does least work for it.  The ids are drawn from the sequence
first and handed out in ascending order, so they come back in the order the items were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

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


def insert_many(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Every row in one binary COPY, in the caller's transaction; ``rows`` hold the values of
    :data:`COPY_COLUMNS` after ``id``.  Ids are drawn first and given in ascending order (so
    FIFO holds within the batch); the caller notifies and commits.  A driver error is raised as
    SQLAlchemy's, as from any statement (the COPY runs on the driver's own cursor)."""
    ids = sorted(int(item_id) for item_id in conn.execute(_IDS, {"n": len(rows)}).scalar_one().split(","))
    dbapi = conn.dialect.loaded_dbapi
    driver: Any = conn.connection.driver_connection  # psycopg's own: COPY is not in DB-API
    try:
        with driver.cursor() as cursor, cursor.copy(_COPY) as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            for item_id, row in zip(ids, rows, strict=True):
                write((item_id, *row))
    except dbapi.Error as exc:
        raise DBAPIError.instance(_COPY, None, exc, dbapi.Error) from exc
    return ids
