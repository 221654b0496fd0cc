"""PostgreSQL's fast ways in: one round trip for one item, one statement for a batch.

Why not the generic path: one item through ``engine.begin()`` cost BEGIN, the INSERT, a
``SELECT pg_notify``, and COMMIT, four round trips where one does (an INSERT and its NOTIFY in
one statement, committed on its own).  A batch through SQLAlchemy's insertmanyvalues built a SQL
text of every row that the driver then parsed again (2.7 s of a 10,000-item ``enqueue_many``
went to splitting that string); here the rows travel as one array per column, ``unnest``ed by
the server.  Their ids are drawn from the sequence first, so the ids come back in the order the
items were given without relying on the order of RETURNING.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from statusq.queues.db.schema import NOTIFY_CHANNEL, items

#: The columns a producer writes, with their PostgreSQL array types.
_COLUMNS = {
    "site": "text[]",
    "transport": "text[]",
    "priority": "smallint[]",
    "content_type": "text[]",
    "body": "bytea[]",
    "headers": "text[]",
    "attempts": "int[]",
    "enqueued_at": "float8[]",
    "available_at": "float8[]",
    "held": "smallint[]",
    "expires_at": "float8[]",
}
_MANY = text(
    f"INSERT INTO {items.name} (id, {', '.join(_COLUMNS)}) "
    "SELECT * FROM unnest(CAST(:id AS bigint[]), "
    + ", ".join(f"CAST(:{name} AS {kind})" for name, kind in _COLUMNS.items())
    + ")"
)
_ONE = text(
    f"WITH added AS (INSERT INTO {items.name} ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _COLUMNS)}) RETURNING id) "
    f"SELECT id, pg_notify('{NOTIFY_CHANNEL}', :transport) FROM added"
)
_IDS = text(f"SELECT nextval(pg_get_serial_sequence('{items.name}', 'id')) FROM generate_series(1, :n)")


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


def insert_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Every row in one statement (ids drawn first, in order); the caller notifies and commits."""
    ids = [row[0] for row in conn.execute(_IDS, {"n": len(rows)})]
    params: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in _COLUMNS}
    conn.execute(_MANY, {"id": ids, **params})
    return ids
