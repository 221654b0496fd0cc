"""PostgreSQL's fast ways in: one round trip for one item, one statement for a batch.

Why not the generic path: one item through ``engine.begin()`` cost BEGIN, the INSERT, a
``SELECT pg_notify``, and COMMIT, four round trips where one does (an INSERT and its NOTIFY in
one statement, committed on its own).  A batch through SQLAlchemy's insertmanyvalues built a SQL
text of every row that the driver then parsed again (2.7 s of a 10,000-item ``enqueue_many``
went to splitting that string), and arrays per column cost 0.3 s in the driver's pure-Python
array dumper; here the rows travel as one JSON document (``json.dumps`` is C), bodies in base64,
read by the server's ``json_to_recordset``.  Their ids are drawn from the sequence first and
handed out in ascending order, so they come back in the order the items were given without
relying on the order of RETURNING.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text

from statusq.queues.db.schema import NOTIFY_CHANNEL, items

#: The columns a producer writes, with their PostgreSQL types.
_COLUMNS = {
    "site": "text",
    "transport": "text",
    "priority": "smallint",
    "content_type": "text",
    "body": "bytea",
    "headers": "text",
    "attempts": "int",
    "enqueued_at": "float8",
    "available_at": "float8",
    "held": "smallint",
    "expires_at": "float8",
}
_MANY = text(
    f"INSERT INTO {items.name} (id, {', '.join(_COLUMNS)}) "
    f"SELECT id, {', '.join('decode(body, $$base64$$)' if name == 'body' else name for name in _COLUMNS)} "
    "FROM json_to_recordset(CAST(:rows AS json)) AS r(id bigint, "
    + ", ".join(f"{name} {'text' if name == 'body' else kind}" for name, kind in _COLUMNS.items())
    + ")"
)
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


def insert_many(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Every row in one statement, ids drawn first and given in ascending order (so FIFO holds
    within the batch); the caller notifies and commits."""
    ids = sorted(int(item_id) for item_id in conn.execute(_IDS, {"n": len(rows)}).scalar_one().split(","))
    document = [
        {**row, "id": item_id, "body": base64.b64encode(row["body"]).decode()}
        for item_id, row in zip(ids, rows, strict=True)
    ]
    conn.execute(_MANY, {"rows": json.dumps(document)})
    return ids
