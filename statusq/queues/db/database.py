"""The database backend's one link: an engine, shared by its producer, consumers and admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, func, select

from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.schema import NOTIFY_CHANNEL, metadata


class Database:
    def __init__(self, url: str, claim_timeout: float) -> None:
        self.engine = make_engine(url)
        self.claim_timeout = claim_timeout
        self.is_postgres = self.engine.dialect.name == "postgresql"
        create_tables(self.engine, metadata)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate driver errors at the boundary, naming the database (without a password)."""
        with db_errors(self.engine):
            yield

    def notify(self, conn: Connection, transport: str) -> None:
        """Wake the LISTENing consumers (PostgreSQL only: on SQLite they poll)."""
        if self.is_postgres:
            conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, transport)))

    def close(self) -> None:
        self.engine.dispose()
