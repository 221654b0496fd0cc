"""The transactional outbox for the STOMP backend (``[queue.stomp] outbox_url``).

A broker's sends cannot join the application's database transaction, so an application that
needs "the item if and only if my rows" enqueues with ``connection=conn``: the item is written to
the ``statusq_outbox`` table in *its* database, in its transaction.  The daemon's workers relay
committed rows to the broker (:func:`relay`): a batch is sent in one STOMP transaction confirmed
by a receipt, and only then deleted, in the database transaction that locked it.  So each item
is sent at least once (a crash between the receipt and the delete sends it again, with the same
id), never before the application's commit, never after its rollback.

Several workers and hosts may relay one outbox: PostgreSQL's ``FOR UPDATE SKIP LOCKED`` gives
each batch to one of them; SQLite serialises them with its write lock.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    delete,
    select,
)

from statusq.errors import InvalidArgument
from statusq.item import Message
from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.transactional import write_rows

metadata = MetaData()

outbox = Table(
    "statusq_outbox",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),  # relay order
    Column("id", String(64), nullable=False),  # the item's id, carried to the broker
    Column("site", String(255), nullable=False),
    Column("transport", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("not_before", Float, nullable=False),  # enqueue time + delay: the delay's end, kept on relay
    Column("expires_at", Float),
    Column("written_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

#: Rows relayed per broker transaction.
BATCH = 500


def open_outbox(url: str) -> Engine:
    """The outbox's database (the application's), its table made if missing."""
    engine = make_engine(url)
    create_tables(engine, metadata)
    return engine


def write(engine: Engine, connection: Any, messages: list[Message]) -> list[str]:
    """The rows of ``messages`` in the application's transaction on ``connection``; their ids."""
    now = time.time()
    ids = [uuid.uuid4().hex for _ in messages]
    rows = [
        {
            "id": item_id,
            "site": m.site,
            "transport": m.transport,
            "priority": m.priority,
            "content_type": m.content_type,
            "body": m.body,
            "headers": json.dumps(m.headers),
            "not_before": now + m.delay,
            "expires_at": m.expires_at,
            "written_at": now,
        }
        for item_id, m in zip(ids, messages, strict=True)
    ]
    write_rows(engine, connection, outbox, rows)
    return ids


def relay(engine: Engine, send: Callable[[list[Message]], object], batch: int = BATCH) -> int:
    """Send one batch of committed rows, oldest first, and delete them once the broker confirmed
    (``send`` raises if it did not: the rows stay, for the next turn); how many were sent."""
    query = select(outbox).order_by(outbox.c.n).limit(batch)
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    with db_errors(engine), engine.begin() as conn:
        rows = conn.execute(query).mappings().all()
        if not rows:
            return 0
        now = time.time()
        send([_message(row, now) for row in rows])
        conn.execute(delete(outbox).where(outbox.c.n.in_([row["n"] for row in rows])))
    return len(rows)


def _message(row: Any, now: float) -> Message:
    return Message(
        site=row["site"],
        transport=row["transport"],
        body=row["body"],
        content_type=row["content_type"],
        headers=json.loads(row["headers"]),
        priority=row["priority"],
        id=row["id"],
        delay=max(0.0, row["not_before"] - now),
        expires_at=row["expires_at"],
    )


def check_url(url: str | None) -> str:
    if url is None:
        raise InvalidArgument(
            "connection", "the STOMP backend enqueues in a transaction through an outbox: set [queue.stomp] outbox_url"
        )
    return url
