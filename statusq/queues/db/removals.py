"""Site removals: the shared store's table of sites ``statusq control remove-site`` removed.

Beside the pauses (statusq.queues.db.pauses), in the database at ``db_url`` whatever the queue
backend, so a removal is persisted state: a new, respawned, reloaded or reconnecting worker reads
it at start and re-reads it (statusq.removals), instead of depending on a control message it
could have missed.  ``update-site`` deletes the row.  The sender writes it, before the command is
broadcast, so a worker that re-reads on the command finds it there.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, MetaData, String, Table, delete, exists, insert, literal, select
from sqlalchemy.exc import IntegrityError

from statusq.errors import QueueError
from statusq.queues.db.engine import TableStore, db_errors

metadata = MetaData()

removals = Table(
    "statusq_site_removals",
    metadata,
    Column("site", String(255), primary_key=True),
    Column("removed_at", Float, nullable=False),
)


class RemovalStore(TableStore):
    """The removal table at one ``db_url``."""

    metadata = metadata

    def remove(self, site: str) -> None:
        """Record ``site`` as removed; removing it again keeps the first time.

        One statement, a write from its start: on SQLite a transaction that reads first and then
        writes fails at once ("database is locked", no busy wait) when another process wrote in
        between, as a worker settling items does all the time."""
        missing = ~exists(select(removals.c.site).where(removals.c.site == site))
        row = select(literal(site, String), literal(self.clock(), Float)).where(missing)
        try:
            with db_errors(self.engine), self.engine.begin() as conn:
                conn.execute(insert(removals).from_select(["site", "removed_at"], row))
        except QueueError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise  # else: another sender removed it in the same instant

    def restore(self, site: str) -> bool:
        """Forget a removal (``update-site``); False when there was none."""
        with db_errors(self.engine), self.engine.begin() as conn:
            return bool(conn.execute(delete(removals).where(removals.c.site == site)).rowcount)

    def list(self) -> dict[str, float]:
        """Every removed site, with when it was removed."""
        with db_errors(self.engine), self.engine.connect() as conn:
            return {row.site: row.removed_at for row in conn.execute(select(removals))}


def read_removed(db_url: str) -> dict[str, float]:
    """The removed sites at ``db_url`` with when, over a connection opened and closed for it
    (the status command, the web page: readers that do not keep a store open)."""
    store = RemovalStore.open(db_url)
    try:
        return store.list()
    finally:
        store.close()
