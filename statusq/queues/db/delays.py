"""Delayed items held in the shared store until due, for a broker that would lose them.

ActiveMQ's scheduler sends a delayed message when it comes due; if the destination's store is
full at that moment it logs "Failed to send scheduled message" and forgets the job (its
``SchedulerBroker`` catches the refusal; no setting changes that).  So on a broker that may fill,
a delayed item, a retry waiting out its backoff and a rate limit's deferral wait here instead,
in the shared store at ``db_url``, and every worker relays what is due (:mod:`statusq.io.delays`).

At least once: a relay deletes its rows only after the broker confirmed their SENDs; a refusal
(a full broker), a lost connection or a crash before that leaves them for the next try.  A crash
between the broker's receipt and the delete sends them twice (the same ids).

Several workers and hosts relay one table: each claims the rows it sends (``claimed_until``, in a
transaction of its own, so no lock is held while a broker is slow or full to answer), with
PostgreSQL's ``FOR UPDATE SKIP LOCKED`` or SQLite's write lock choosing who; a claim left by a
relay that died runs out, and another sends those rows (at least once).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from statusq.queues.db.engine import TableStore, db_errors

metadata = MetaData()

delayed_items = Table(
    "statusq_delayed",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("due_at", Float, nullable=False, index=True),  # epoch seconds
    Column("destination", String(1000), nullable=False),
    Column("headers", Text, nullable=False),  # JSON: the SEND's headers, as they go to the broker
    Column("body", LargeBinary, nullable=False),
    Column("claimed_until", Float),  # a relay is sending it (epoch seconds; None: nobody)
    sqlite_autoincrement=True,
)

#: Rows relayed per broker transaction.
BATCH = 200
#: How long a relay's claim on rows lasts: far past any send's ``receipt_timeout``.
CLAIM_FOR = 120.0
#: A row due this long ago and still here is late: relays look every ``delay_poll`` (0.25 s).
LATE_AFTER = 10.0


@dataclass(frozen=True, slots=True)
class Delayed:
    """One SEND that waits: where to, what, and from when."""

    destination: str
    body: bytes
    headers: dict[str, str]
    due_at: float


@dataclass(frozen=True, slots=True)
class DelaySummary:
    waiting: int
    late: int  # due over ``late_after`` seconds ago, not sent yet
    late_after: float
    earliest: float | None  # epoch seconds


class DelayStore(TableStore):
    """The table at one ``db_url``."""

    metadata = metadata

    def put(self, items: Sequence[Delayed]) -> None:
        """Committed when this returns: only then may a re-sent item's original be acked, or a
        producer's enqueue return."""
        rows = [
            {"due_at": d.due_at, "destination": d.destination, "headers": json.dumps(d.headers), "body": d.body}
            for d in items
        ]
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(insert(delayed_items), rows)

    def next_due(self) -> float | None:
        """When the earliest row comes due (None: no row).  A read: the relay's every look."""
        with db_errors(self.engine), self.engine.connect() as conn:
            value = conn.execute(select(func.min(delayed_items.c.due_at))).scalar()
        return None if value is None else float(value)

    def relay(
        self, send: Callable[[list[Delayed]], object], now: float, batch: int = BATCH, claim_for: float = CLAIM_FOR
    ) -> int:
        """Claim up to ``batch`` rows due at ``now`` (committed: no lock is held while the broker
        is asked), hand them to ``send`` in due order, and delete them once it returned; if it
        raises (the broker did not confirm) the claim is given up and the rows wait for the next
        try.  A relay that died holding a claim leaves its rows to any other after ``claim_for``
        seconds.  How many were sent."""
        c = delayed_items.c
        free = (c.claimed_until.is_(None)) | (c.claimed_until < now)
        due = select(c.n).where(c.due_at <= now, free).order_by(c.due_at).limit(batch)
        if self.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        claiming = (
            update(delayed_items)
            .where(c.n.in_(due.scalar_subquery()))
            .values(claimed_until=now + claim_for)
            .returning(c.n, c.due_at, c.destination, c.headers, c.body)
        )
        with db_errors(self.engine), self.engine.begin() as conn:
            rows = sorted(conn.execute(claiming).all(), key=lambda r: r.due_at)
        if not rows:
            return 0
        numbers = [r.n for r in rows]
        try:
            send([Delayed(r.destination, r.body, json.loads(r.headers), r.due_at) for r in rows])
        except BaseException:
            with db_errors(self.engine), self.engine.begin() as conn:
                conn.execute(update(delayed_items).where(c.n.in_(numbers)).values(claimed_until=None))
            raise
        with db_errors(self.engine), self.engine.begin() as conn:
            conn.execute(delete(delayed_items).where(c.n.in_(numbers)))
        return len(rows)

    def count(self) -> int:
        """Rows waiting (tests)."""
        with db_errors(self.engine), self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(delayed_items)).scalar() or 0)

    def summary(self, now: float, late_after: float = LATE_AFTER) -> DelaySummary:
        """For ``statusq status``: rows waiting, and those due over ``late_after`` seconds ago that
        no relay has sent (no daemon with this db_url, or a broker refusing them)."""
        late = func.count().filter(delayed_items.c.due_at <= now - late_after)
        query = select(func.count(), late, func.min(delayed_items.c.due_at)).select_from(delayed_items)
        with db_errors(self.engine), self.engine.connect() as conn:
            waiting, overdue, earliest = conn.execute(query).one()
        return DelaySummary(int(waiting), int(overdue), late_after, None if earliest is None else float(earliest))
