"""The database backend's one link: an engine, shared by its producer, consumers and admin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text

from statusq.defaults import SQLITE_SYNCHRONOUS
from statusq.errors import QueueError
from statusq.queues.db.engine import create_tables, db_errors, make_engine
from statusq.queues.db.schema import NOTIFY_CHANNEL, items, metadata, notify_stmt

#: Columns added to a table after its first release (an old row takes the default), with the SQL
#: they are added with.
_ADDED = {items.name: {"expires_at": "FLOAT", "held": "SMALLINT NOT NULL DEFAULT 0"}}
#: Indexes of an earlier release that newer ones replaced.
_REPLACED = ["statusq_items_next"]


def _consumer_settings(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("SET synchronous_commit = off; SET enable_bitmapscan = off; SET enable_sort = off")


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
        self._consumers: Engine | None = None
        create_tables(self.engine, metadata)
        upgrade(self.engine)

    def consumer_connection(self) -> AbstractContextManager[Connection]:
        """Where a consumer claims and settles.  SQLite: a transaction on the shared engine.
        PostgreSQL: an autocommitted connection of the consumers' own pool, set up once with
        ``synchronous_commit = off`` (a lost claim or settlement runs an item again, never
        loses one), no bitmap scans and no sorts (a queue table's statistics are nearly always
        stale: believing it held one row, the planner read every ready row and sorted them,
        per claim, 25 ms at 5,000 queued against 1 ms down the ready index), and no ping before
        each use (a connection the server dropped fails one poll; the pool then replaces it).
        Each statement commits by itself, so a claim alone is one round trip, not five."""
        if not self.is_postgres:
            return self.engine.begin()
        if self._consumers is None:
            self._consumers = create_engine(
                self.engine.url, isolation_level="AUTOCOMMIT", pool_pre_ping=False, pool_size=2
            )
            event.listen(self._consumers, "connect", _consumer_settings)
        return self._consumers.connect()

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Translate driver errors at the boundary, naming the database (without a password)."""
        with db_errors(self.engine):
            yield

    def notify(self, conn: Connection, transport: str) -> None:
        """Wake the LISTENing consumers (PostgreSQL only: on SQLite they poll)."""
        if self.is_postgres:
            conn.execute(notify_stmt(NOTIFY_CHANNEL, transport))

    def close(self) -> None:
        if self._consumers is not None:
            self._consumers.dispose()
        self.engine.dispose()
