"""Remembered cancellations and purges in a database (statusq.queues.cancels): the items' own
on the database backend, ``[queue] db_url`` on STOMP (PostgreSQL when hosts share a broker)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from sqlalchemy import Column, Connection, Engine, Float, Integer, MetaData, String, Table, Text, delete, insert, select

from statusq.queues.cancels import REMEMBERED_FOR, CancelStore, Purge
from statusq.queues.db.engine import create_tables, db_errors, make_engine

metadata = MetaData()

cancelled = Table(
    "statusq_cancelled",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False, index=True),
)

purges = Table(
    "statusq_purges",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("site", String(255)),
    Column("transport", String(64)),
    Column("before", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("at", Float, nullable=False),
)


class SqlCancels(CancelStore):
    """``engine``: the backend's own, or None to open ``url``."""

    def __init__(self, url: str, engine: Engine | None = None, clock: Callable[[], float] = time.time) -> None:
        self._owned = engine is None
        self.engine = make_engine(url) if engine is None else engine
        self.clock = clock
        create_tables(self.engine, metadata)

    def remember(self, ids: Iterable[str], reason: str) -> None:
        now = self.clock()
        rows = [{"id": i, "reason": reason, "at": now} for i in dict.fromkeys(ids)]
        if not rows:
            return
        with db_errors(self.engine), self.engine.begin() as conn:
            self._forget_old(conn, now)
            conn.execute(delete(cancelled).where(cancelled.c.id.in_([r["id"] for r in rows])))
            conn.execute(insert(cancelled), rows)

    def remember_purge(self, purge: Purge) -> None:
        row = {"site": purge.site, "transport": purge.transport, "before": purge.before, "reason": purge.reason}
        now = self.clock()
        with db_errors(self.engine), self.engine.begin() as conn:
            self._forget_old(conn, now)
            conn.execute(insert(purges).values(at=now, **row))

    @staticmethod
    def _forget_old(conn: Connection, now: float) -> None:
        """In the writers' transactions, not the readers': workers read every second."""
        conn.execute(delete(cancelled).where(cancelled.c.at < now - REMEMBERED_FOR))
        conn.execute(delete(purges).where(purges.c.at < now - REMEMBERED_FOR))

    def load(self) -> tuple[dict[str, str], list[Purge]]:
        oldest = self.clock() - REMEMBERED_FOR
        with db_errors(self.engine), self.engine.connect() as conn:
            query = select(cancelled.c.id, cancelled.c.reason).where(cancelled.c.at >= oldest)
            ids = {row.id: row.reason for row in conn.execute(query)}
            columns = (purges.c.site, purges.c.transport, purges.c.before, purges.c.reason)
            found = conn.execute(select(*columns).where(purges.c.at >= oldest))
            return ids, [Purge(r.site, r.transport, r.before, r.reason) for r in found]

    def close(self) -> None:
        if self._owned:
            self.engine.dispose()
