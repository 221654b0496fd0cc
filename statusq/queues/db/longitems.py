"""Long items: what a worker on a broker runs past the broker's consumer timeout, held here.

A broker redelivers a message left unacknowledged past its consumer timeout (RabbitMQ closes the
channel: ``consumer_timeout``, 30 minutes by default), so a handler that runs longer would be
run again while it runs.  A transport marked ``long`` is instead taken off the broker before its
handler starts (statusq.queues.stomp.longjobs): the item is written here, with the worker as
owner and a lease, then acked; the worker renews the lease while the handler runs and deletes
the row once the outcome is on the broker.  A row whose lease ran out (its worker was killed)
is sent back to the broker by any worker of the same backend, as its next attempt: nothing is
lost, as Sidekiq's super_fetch keeps a claimed job in a list of its own.

In the shared store at ``db_url`` beside the pauses, so every host sees every other's rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table, Text, delete, insert, select, update

from statusq.queues.db.engine import TableStore, db_errors

metadata = MetaData()

long_items = Table(
    "statusq_long_items",
    metadata,
    Column("key", String(64), primary_key=True),  # the item id and a nonce: a row per delivery
    Column("owner", String(255), nullable=False, index=True),
    Column("destination", String(1000), nullable=False),
    Column("headers", Text, nullable=False),  # JSON: the headers to send it again with
    Column("body", LargeBinary, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
)


@dataclass(frozen=True, slots=True)
class LongItem:
    key: str
    destination: str
    headers: dict[str, str]
    body: bytes


class LongItemStore(TableStore):
    """The table at one ``db_url``."""

    metadata = metadata

    def put(self, item: LongItem, owner: str, expires_at: float) -> None:
        """Committed when this returns: only then may the broker's copy be acked."""
        row = {
            "key": item.key,
            "owner": owner,
            "destination": item.destination,
            "headers": json.dumps(item.headers),
            "body": item.body,
            "expires_at": expires_at,
        }
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(insert(long_items).values(**row))

    def renew(self, keys: list[str], expires_at: float) -> int:
        """Push back the lease of these rows (a worker's items still running; not one whose
        outcome could not be sent: that one is left to expire and go back)."""
        with db_errors(self.engine), self.engine.begin() as conn:
            query = update(long_items).where(long_items.c.key.in_(keys)).values(expires_at=expires_at)
            return conn.execute(query).rowcount

    def delete(self, key: str) -> None:
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(delete(long_items).where(long_items.c.key == key))

    def expired(self, now: float, limit: int = 100) -> list[tuple[LongItem, str]]:
        """Rows whose lease ran out, with their owner: each to be :meth:`reclaim`ed, sent back, deleted."""
        query = select(long_items).where(long_items.c.expires_at < now).limit(limit)
        with db_errors(self.engine), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(LongItem(r.key, r.destination, json.loads(r.headers), r.body), r.owner) for r in rows]

    def reclaim(self, key: str, owner: str, now: float, new_owner: str, expires_at: float) -> bool:
        """Make an expired row ``new_owner``'s if it is still as :meth:`expired` saw it: of two
        workers sweeping at once one wins, an owner that renewed meanwhile keeps it, and a sweeper
        killed before it sent the item back leaves a row that expires again."""
        condition = (long_items.c.key == key) & (long_items.c.owner == owner) & (long_items.c.expires_at < now)
        query = update(long_items).where(condition).values(owner=new_owner, expires_at=expires_at)
        with db_errors(self.engine), self.engine.begin() as conn:
            return bool(conn.execute(query).rowcount)
