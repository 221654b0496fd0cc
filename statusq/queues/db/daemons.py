"""The cluster's heartbeats: one row per running daemon in the shared store at ``db_url``.

Like the pauses (:mod:`statusq.queues.db.pauses`) it lives in the database at ``db_url`` whatever
the queue backend, so every daemon on every host sees every other one: ``statusq status --all``,
the web page and ``statusq_cluster_daemons`` read it.  A supervisor rewrites its row every
``[daemon] beat`` seconds (:mod:`statusq.daemon.heartbeat`) and deletes it when it stops cleanly;
a row whose last beat is more than :data:`GONE_BEATS` of its own beats old is a daemon that died
or lost the store.

Ages compare one host's clock (the beat) with another's (the reader): keep hosts on NTP.  A skew
of a few seconds only moves when a daemon shows as gone by that much.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, Text, delete, select, update

from statusq.queues.db.engine import TableStore, db_errors

metadata = MetaData()

#: A daemon is gone once its last beat is older than this many of its own beat intervals.
GONE_BEATS = 3

daemons = Table(
    "statusq_daemons",
    metadata,
    Column("id", String(128), primary_key=True),  # host:pid:random, unique per start
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(32), nullable=False),  # the supervisor's: running, reloading, stopping...
    Column("workers", Integer, nullable=False),  # worker processes ready
    Column("wanted", Integer, nullable=False),  # worker slots it keeps
    Column("in_hand", Integer, nullable=False),  # items its workers hold now
    Column("version", String(64), nullable=False),
    Column("backend", String(255), nullable=False),  # "db sqlite:///...", "stomp host:port,..."
    Column("config_id", String(32), nullable=False),  # a digest of its [queue] section
    Column("started_at", Float, nullable=False),
    Column("beat_at", Float, nullable=False),
    Column("beat", Float, nullable=False),  # its beat interval: what "gone" is measured in
    # JSON list of its workers' claim owners (DB backend), whose claims are released when it is gone.
    Column("owners", Text, nullable=False, default="[]"),
    Column("released_at", Float),  # when another daemon released its claims (gone)
)


@dataclass(frozen=True, slots=True)
class DaemonRow:
    id: str
    host: str
    pid: int
    state: str
    workers: int
    wanted: int
    in_hand: int
    version: str
    backend: str
    config_id: str
    started_at: float
    beat_at: float
    beat: float
    owners: list[str] = field(default_factory=list)
    released_at: float | None = None

    def gone(self, now: float) -> bool:
        """No beat for more than :data:`GONE_BEATS` beats: dead, hung, or cut off from the store."""
        return now - self.beat_at > GONE_BEATS * self.beat

    def status(self, now: float) -> str:
        return "gone" if self.gone(now) else "alive"

    def to_values(self) -> dict[str, object]:
        values = asdict(self)
        values["owners"] = json.dumps(self.owners)
        return values

    @classmethod
    def from_row(cls, row: dict[str, object]) -> DaemonRow:
        values = dict(row)
        values["owners"] = json.loads(str(values.get("owners") or "[]"))
        return cls(**values)  # type: ignore[arg-type]


def to_release(rows: Iterable[DaemonRow], now: float) -> list[DaemonRow]:
    """Gone daemons whose workers' claims nobody has released yet."""
    return [r for r in rows if r.gone(now) and r.released_at is None and r.owners]


def to_forget(rows: Iterable[DaemonRow], now: float, after: float) -> list[DaemonRow]:
    """Daemons silent for longer than ``after`` seconds: off the list (a host retired for good)."""
    return [r for r in rows if now - r.beat_at > after]


class DaemonStore(TableStore):
    """The heartbeat table at one ``db_url``.  The supervisor forks: call :meth:`close` after use
    so that no pooled connection is copied into a worker."""

    metadata = metadata

    def beat(self, row: DaemonRow) -> None:
        """Insert or refresh this daemon's row (a beat after being seen gone revives it)."""
        values = row.to_values()
        with db_errors(self.engine), self.engine.begin() as conn:
            found = conn.execute(update(daemons).where(daemons.c.id == row.id).values(values))
            if not found.rowcount:
                conn.execute(daemons.insert().values(values))

    def list(self) -> list[DaemonRow]:
        """Every daemon that beat, by host then pid."""
        with db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(select(daemons).order_by(daemons.c.host, daemons.c.pid, daemons.c.id)).mappings()
            return [DaemonRow.from_row(dict(r)) for r in rows]

    def mark_released(self, daemon_id: str, when: float) -> None:
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(update(daemons).where(daemons.c.id == daemon_id).values(released_at=when))

    def remove(self, *ids: str) -> None:
        if not ids:
            return
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(delete(daemons).where(daemons.c.id.in_(ids)))


def read_cluster(db_url: str) -> list[DaemonRow]:
    """Every daemon in the store at ``db_url``, on a connection closed at once (none: no daemon
    ever beat there, and no table is made for the asking)."""
    store = DaemonStore.for_reading(db_url)
    if store is None:
        return []
    try:
        return store.list()
    finally:
        store.close()
