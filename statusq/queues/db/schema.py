"""Tables of the database backend (SQLite or PostgreSQL), in SQLAlchemy Core."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    literal_column,
    select,
    text,
)

from statusq.defaults import DB_CONTROL_TABLE

metadata = MetaData()

#: PostgreSQL: an enqueue NOTIFYs this channel of its schema (:func:`channel_sql`), and a
#: consumer LISTENs on it to wake at once.
NOTIFY_CHANNEL = "statusq_items"


def channel_sql(base: str) -> str:
    """SQL for ``base``'s NOTIFY channel in the session's schema.  Channels belong to a database,
    not a schema: deployments in schemas of one database (the suite's tests, in parallel) woke
    each other's consumers through one shared name, a wasted claim each time.  A digest, not the
    name itself: a schema's name alone can fill a channel name's 63 bytes."""
    return f"'{base}_' || left(md5(current_schema()), 12)"


def notify_stmt(base: str, payload: str) -> Select[tuple[object]]:
    """``SELECT pg_notify(...)`` on ``base``'s channel of the session's schema."""
    return select(func.pg_notify(literal_column(channel_sql(base)), payload))


# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
_Id = BigInteger().with_variant(Integer(), "sqlite")

items = Table(
    "statusq_items",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("site", String(255), nullable=False),
    Column("transport", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),  # JSON object of str -> str
    Column("attempts", Integer, nullable=False, default=0),  # deliveries started so far
    Column("enqueued_at", Float, nullable=False),
    Column("available_at", Float, nullable=False),  # not before: retry backoff
    Column("claimed_by", String(128)),
    Column("claimed_at", Float),
    Column("last_error", Text),
    # Not run after this (epoch seconds), but dead-lettered as expired; NULL: never.  Added after
    # the table's first release: Database adds it to an older table (database.add_missing_columns).
    Column("expires_at", Float),
    # 1 while an enqueue's delay is not yet due: such rows stay out of the claim's index, so a
    # million items delayed by a day cost a claim nothing (a consumer clears the flag once
    # ``available_at`` has come: DBConsumer._promote).  A retry's short backoff is not held.
    Column("held", SmallInteger, nullable=False, server_default=text("0")),
    # Without AUTOINCREMENT SQLite hands a deleted item's id to the next one, and ids in logs
    # and dead letters would stop naming one item.
    sqlite_autoincrement=True,
)
#: Rows a claim may take, and rows waiting out an enqueue's delay (literal SQL, not a bound
#: parameter: a partial index is used only for a query whose WHERE says the same).
NOT_HELD = text("statusq_items.held = 0")
HELD = text("statusq_items.held = 1")
# The claim query walks this: highest priority first, then oldest (FIFO within a priority),
# held rows left out.  It replaced "statusq_items_next", which held rows slowed down (a claim
# scanned past every delayed row of a lower id: 45 ms for 100,000).
Index("statusq_items_ready", items.c.priority.desc(), items.c.id, sqlite_where=NOT_HELD, postgresql_where=NOT_HELD)
# Fair turns across sites (queues/db/turns.py) probe this: the sites with a ready item at a
# priority, one seek each (newest first: a site's oldest items are the ones in flight), and a
# site's oldest ready items at that priority, a range walked backwards.
Index(
    "statusq_items_sites",
    items.c.priority,
    items.c.site,
    items.c.id.desc(),
    sqlite_where=NOT_HELD,
    postgresql_where=NOT_HELD,
)
Index("statusq_items_held", items.c.available_at, sqlite_where=HELD, postgresql_where=HELD)

dead = Table(
    "statusq_dead",
    metadata,
    Column("id", _Id, primary_key=True),  # the item's own id, kept so logs can be followed
    Column("site", String(255), nullable=False),
    Column("transport", String(64), nullable=False),
    Column("priority", SmallInteger, nullable=False),
    Column("content_type", String(128), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("error", Text, nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Column("dead_at", Float, nullable=False),
)

#: Control commands (``statusq control`` on the database backend): each worker reads the rows
#: past the last id it saw (statusq.queues.db.control).  ``headers``: a JSON object, the
#: signature's headers when a secret is configured; ``created``: the sender's clock, by which
#: the next sender deletes old rows.
control = Table(
    DB_CONTROL_TABLE,
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("command", Text, nullable=False),
    Column("headers", Text, nullable=False),
    Column("created", Float, nullable=False, index=True),
    sqlite_autoincrement=True,  # a deleted row's id is never handed out again: workers read past it
)
