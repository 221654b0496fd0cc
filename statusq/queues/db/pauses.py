"""Pauses: the shared store's table of held sites and transports (``statusq pause``).

It lives in the database at ``db_url`` whatever the queue backend (SQLite on one host,
PostgreSQL when several hosts share the work), beside the dispatcher's tables, so a pause is
persisted state: every daemon on every host reads it, a restarted or new worker reads it at
start, and nothing depends on a message it could have missed.  Workers hold what it names
(:mod:`statusq.pauses`); this module only stores it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Float, MetaData, String, Table, delete, insert, select, update

from statusq.errors import InvalidArgument
from statusq.queues.db.engine import TableStore, db_errors

metadata = MetaData()

#: One row per paused scope: ``kind`` "site" or "transport", ``name`` the site or transport.
pauses = Table(
    "statusq_pauses",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("reason", String(1000), nullable=False, default=""),
    Column("paused_at", Float, nullable=False),
)

KINDS = ("site", "transport")


@dataclass(frozen=True, slots=True)
class Pause:
    kind: str  # "site" or "transport"
    name: str
    reason: str
    paused_at: float

    @property
    def site(self) -> str:
        """The label value of ``statusq_paused{site=...}``: empty for a transport's pause."""
        return self.name if self.kind == "site" else ""

    @property
    def transport(self) -> str:
        return self.name if self.kind == "transport" else ""

    def describe(self) -> str:
        because = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {self.name} paused{because}"


def scope(site: str | None, transport: str | None) -> tuple[str, str]:
    """The one scope a pause or resume names; both or neither is a caller's mistake."""
    if (site is None) == (transport is None):
        raise InvalidArgument("site, transport", "name exactly one of them")
    return ("site", site) if site is not None else ("transport", transport or "")


class PauseStore(TableStore):
    """The pause table at one ``db_url``; cheap to keep open (one small pool)."""

    metadata = metadata

    def pause(self, *, site: str | None = None, transport: str | None = None, reason: str = "") -> Pause:
        """Hold ``site``'s or ``transport``'s items; pausing again only updates the reason."""
        kind, name = scope(site, transport)
        if not name:
            raise InvalidArgument(kind, "an empty name")
        where = (pauses.c.kind == kind) & (pauses.c.name == name)
        # The write first: on SQLite a transaction that read before writing cannot wait for
        # the write lock (busy_timeout does not apply to that upgrade) and failed at once with
        # "database is locked" whenever a worker wrote in between.
        with db_errors(self.engine), self.engine.begin() as conn:
            again = update(pauses).where(where).values(reason=reason).returning(pauses.c.paused_at)
            row = conn.execute(again).first()
            if row is not None:
                return Pause(kind, name, reason, row[0])
            paused = Pause(kind, name, reason, self.clock())
            conn.execute(insert(pauses).values(kind=kind, name=name, reason=reason, paused_at=paused.paused_at))
            return paused

    def resume(self, *, site: str | None = None, transport: str | None = None) -> bool:
        """Lift a pause; False when there was none."""
        kind, name = scope(site, transport)
        with db_errors(self.engine), self.engine.begin() as conn:
            gone = conn.execute(delete(pauses).where((pauses.c.kind == kind) & (pauses.c.name == name)))
            return bool(gone.rowcount)

    def list(self) -> list[Pause]:
        """Every pause, oldest first."""
        with db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(select(pauses).order_by(pauses.c.paused_at, pauses.c.kind, pauses.c.name))
            return [Pause(r.kind, r.name, r.reason, r.paused_at) for r in rows]
