"""The database backend's one link: an engine, shared by its producer, consumers and admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, func, inspect, select, text

from statusq.defaults import SQLITE_SYNCHRONOUS
from statusq.errors import QueueError
from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.schema import NOTIFY_CHANNEL, items, metadata

#: Columns added to a table after its first release (an old row takes the default), with the SQL
#: they are added with.
_ADDED = {items.name: {"expires_at": "FLOAT", "held": "SMALLINT NOT NULL DEFAULT 0"}}
#: Indexes of an earlier release that newer ones replaced.
_REPLACED = ["statusq_items_next"]


def upgrade(engine: Engine) -> None:
    """Bring tables made by an older statusq up to date (``create_all`` creates only what is
    missing whole): add columns, swap indexes.  Two processes may race: the loser's statement
    fails, and a second look finds the work done."""
    for attempt in (1, 2):
        try:
            _upgrade(engine)
            return
        except QueueError:
            if attempt == 2:
                raise


def _upgrade(engine: Engine) -> None:
    with db_errors(engine):
        inspector = inspect(engine)
        columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in _ADDED}
        indexes = {i["name"] for i in inspector.get_indexes(items.name)}
    missing = {t: added.keys() - columns[t] for t, added in _ADDED.items()}
    replaced = [name for name in _REPLACED if name in indexes]
    if any(missing.values()) or replaced:
        with db_errors(engine), engine.begin() as conn:
            for table, names in missing.items():
                for name in sorted(names):
                    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {_ADDED[table][name]}"))
            for name in replaced:
                conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
    for index in items.indexes:
        if index.name not in indexes:
            with db_errors(engine):
                index.create(engine, checkfirst=True)


class Database:
    def __init__(self, url: str, claim_timeout: float, sqlite_synchronous: str = SQLITE_SYNCHRONOUS) -> None:
        self.engine = make_engine(url, sqlite_synchronous)
        self.claim_timeout = claim_timeout
        self.is_postgres = self.engine.dialect.name == "postgresql"
        create_tables(self.engine, metadata)
        upgrade(self.engine)

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
