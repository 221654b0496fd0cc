"""Engines for the two databases we support, with the settings each needs for a work queue."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

from sqlalchemy import Engine, MetaData, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from statusq.defaults import SQLITE_SYNCHRONOUS
from statusq.errors import ConfigError, QueueError

_SYNCHRONOUS = {"off": "OFF", "normal": "NORMAL", "full": "FULL", "extra": "EXTRA"}


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    """WAL lets readers (status, producers) work while a worker holds the write lock; the busy
    timeout makes competing workers wait for the lock rather than fail.  ``synchronous``
    (``[queue.db] sqlite_synchronous``) says what a power loss may cost: see DBConfig."""
    level = _SYNCHRONOUS[synchronous]

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={level}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return on_connect


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(url_text: str, sqlite_synchronous: str = SQLITE_SYNCHRONOUS) -> Engine:
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {exc}", key="queue.db_url") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit at the driver level: SQLAlchemy's begin() then issues a real BEGIN, and a
        # claim's single UPDATE takes the write lock at once instead of upgrading a read lock.
        engine = create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": 30, "isolation_level": None},
        )
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        # psycopg 3 is what we ship; a bare postgresql:// URL would ask SQLAlchemy for psycopg2.
        return create_engine(url.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    raise ConfigError(
        f"unsupported database {backend!r} (use sqlite:///PATH or postgresql://...)",
        key="queue.db_url",
    )


@contextmanager
def db_errors(engine: Engine) -> Iterator[None]:
    """Translate driver errors at the boundary into QueueError, naming the database (no password)."""
    try:
        yield
    except (DBAPIError, SQLAlchemyError) as exc:
        where = engine.url.render_as_string(hide_password=True)
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise QueueError(f"database {where}: {detail}") from exc


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Create what is missing.  Processes starting at once (a daemon's supervisor, its workers and
    their stores, a producer) may all try; on SQLite the losers find the file locked for as long
    as another's DDL runs, and on a busy machine that outlasted one retry (CI: "database is
    locked" twice 0.2 s apart).  So it retries for about five seconds before giving up."""
    attempts = 12
    for attempt in range(1, attempts + 1):
        try:
            with db_errors(engine):
                metadata.create_all(engine)
            return
        except QueueError:
            if attempt == attempts:
                raise
            time.sleep(min(0.1 * attempt, 0.8))


def has_tables(engine: Engine, metadata: MetaData) -> bool:
    """Whether every table of ``metadata`` exists (a reader's check: no DDL)."""
    with db_errors(engine):
        names = set(inspect(engine).get_table_names())
    return all(table in names for table in metadata.tables)


class TableStore:
    """A small table of the shared store at ``db_url`` (pauses, removals, the daemons' beats):
    one engine, the table made at :meth:`open` if missing, a clock for its timestamps.
    Subclasses name their ``metadata``."""

    metadata: ClassVar[MetaData]

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    def open(cls, db_url: str) -> Self:
        """The store in the database at ``db_url``, its table created if missing."""
        store = cls(make_engine(db_url))
        create_tables(store.engine, cls.metadata)
        return store

    @classmethod
    def for_reading(cls, db_url: str) -> Self | None:
        """The store at ``db_url`` if its tables exist, else None: a read-only command (``statusq
        status``) issues no DDL, which a read-only database user could not run anyway."""
        store = cls(make_engine(db_url))
        if has_tables(store.engine, cls.metadata):
            return store
        store.close()
        return None

    def close(self) -> None:
        self.engine.dispose()
