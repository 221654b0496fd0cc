"""Unique keys in a database table (``statusq_keys``), for the database backend and for STOMP
(whose broker cannot look into its queues): the ``[queue] db_url`` database, PostgreSQL when
several hosts share a broker.  The rules are in :mod:`statusq.queues.keys`.

A reservation is one ``INSERT … ON CONFLICT DO UPDATE … WHERE expired`` (SQLite and PostgreSQL
both have it): the row either is ours, or was live and stays as it was, atomically, whatever
other producers do at the same moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Engine, Float, MetaData, SmallInteger, String, Table, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.keys import (
    DONE,
    DONE_KEPT,
    PENDING,
    PENDING_MAX,
    RESERVE_TTL,
    RESERVED,
    SWEEP_EVERY,
    Taken,
    UniqueKeys,
)

metadata = MetaData()

keys = Table(
    "statusq_keys",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("item_id", String(64), nullable=False),
    Column("state", SmallInteger, nullable=False),
    Column("unique_for", Float, nullable=False),
    # reserved: when the reservation lapses; pending: due + PENDING_MAX; done: done + unique_for
    Column("expires_at", Float, nullable=False),
)


class SqlKeys(UniqueKeys):
    """``engine``: the backend's own (the database backend), or None to open ``url`` (STOMP)."""

    def __init__(self, url: str, engine: Engine | None = None, clock: Callable[[], float] = time.time) -> None:
        self._owned = engine is None
        self.engine = make_engine(url) if engine is None else engine
        self.clock = clock
        self._swept = clock()
        create_tables(self.engine, metadata)

    def _upsert(self, values: dict[str, Any], now: float) -> Any:
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(keys).values(values)
        return stmt.on_conflict_do_update(
            index_elements=[keys.c.key],
            set_={name: stmt.excluded[name] for name in values if name != "key"},
            where=keys.c.expires_at <= now,
        ).returning(keys.c.key)

    def reserve(self, key: str, unique_for: float) -> Taken | None:
        now = self.clock()
        values = {
            "key": key,
            "item_id": "",
            "state": RESERVED,
            "unique_for": unique_for,
            "expires_at": now + RESERVE_TTL,
        }
        with db_errors(self.engine), self.engine.begin() as conn:
            if conn.execute(self._upsert(values, now)).first() is not None:
                return None
            holder = conn.execute(select(keys.c.item_id).where(keys.c.key == key)).scalar_one_or_none()
        # None: the holder was freed between the two statements; the caller asks again.
        return Taken("" if holder is None else holder)

    def bind(self, key: str, item_id: str, due: float) -> None:
        mine = (keys.c.key == key) & (keys.c.state == RESERVED) & (keys.c.item_id == "")
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(update(keys).where(mine).values(item_id=item_id, state=PENDING, expires_at=due + PENDING_MAX))

    def release(self, key: str, item_id: str) -> None:
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(delete(keys).where((keys.c.key == key) & (keys.c.item_id == item_id)))

    def finish(self, key: str, item_id: str) -> None:
        now = self.clock()
        held = (keys.c.key == key) & (keys.c.item_id == item_id)
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(update(keys).where(held).values(state=DONE, expires_at=now + keys.c.unique_for))
            if now >= self._swept + SWEEP_EVERY:
                self._swept = now
                conn.execute(delete(keys).where((keys.c.state == DONE) & (keys.c.expires_at < now - DONE_KEPT)))

    def is_done(self, key: str, item_id: str) -> bool:
        query = select(keys.c.state).where((keys.c.key == key) & (keys.c.item_id == item_id))
        with db_errors(self.engine), self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none() == DONE

    def close(self) -> None:
        if self._owned:
            self.engine.dispose()
