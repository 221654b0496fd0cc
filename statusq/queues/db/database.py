"""The database backend's one link: an engine, shared by its producer, consumers and admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, func, inspect, select, text

from statusq.errors import QueueError
from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.schema import NOTIFY_CHANNEL, items, metadata

#: Columns added to a table after its first release, each nullable (an old row has none), and
#: the SQL type they are added with.
_ADDED = {items.name: {"expires_at": "FLOAT"}}


def add_missing_columns(engine: Engine) -> None:
    """Bring a table made by an older statusq up to date (``create_all`` creates only what is
    missing whole).  Two processes may race: the loser's ALTER fails, and a second look finds
    the column there."""
    for table, added in _ADDED.items():
        for attempt in (1, 2):
            with db_errors(engine):
                have = {column["name"] for column in inspect(engine).get_columns(table)}
            missing = [name for name in added if name not in have]
            if not missing:
                break
            try:
                with db_errors(engine), engine.begin() as conn:
                    for name in missing:
                        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {added[name]}"))
            except QueueError:
                if attempt == 2:
                    raise


class Database:
    def __init__(self, url: str, claim_timeout: float) -> None:
        self.engine = make_engine(url)
        self.claim_timeout = claim_timeout
        self.is_postgres = self.engine.dialect.name == "postgresql"
        create_tables(self.engine, metadata)
        add_missing_columns(self.engine)

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
