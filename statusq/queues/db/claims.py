"""Batched claims on the database backend: the one statement that takes up to ``n`` items, how
many to ask for, and the statement that hands unstarted ones back.

Why batches: a claim per item paid a transaction (and on PostgreSQL a WAL flush) per item, 385
no-op items/s on one worker.  A claim of ``n`` is one ``UPDATE … WHERE id IN (SELECT … ORDER BY
priority DESC, id LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING``: SQLite runs it under its write
lock, PostgreSQL's sub-select skips rows another worker is taking, so two workers never take one
item.  Which items: the highest ready priority's, in fair turns across sites
(:mod:`statusq.queues.db.turns`).  The rows come back in no promised order; they are sorted
into turns (:func:`~statusq.queues.db.turns.in_turns`), and the worker runs them in that order.

Why the size adapts (:class:`ClaimSize`): what a worker holds no other worker can run.  Sized to
about ``DB_HOLD`` seconds of this worker's own pace, no-op items are claimed by the hundred and
slow ones one at a time, so a batch never keeps a second worker idle for long, nor a
higher-priority item arriving meanwhile waiting long behind it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Update, any_, bindparam, case, literal, update
from sqlalchemy.sql.elements import ColumnElement

from statusq import defaults
from statusq.item import Delivery
from statusq.queues.base import Subscription
from statusq.queues.db.schema import items
from statusq.queues.db.turns import fair_claim_statement

#: The last error of an item whose claim was taken over from a worker presumed dead.
STALE = "claim expired: the worker holding it died or hung"


class ClaimSize:
    """How many items the next claim asks for: ``fixed`` when configured, else the worker's
    measured pace times ``hold`` seconds, between 1 and ``cap``.  Pure: the clock is passed in."""

    def __init__(self, fixed: int | None, cap: int = defaults.DB_PREFETCH, hold: float = defaults.DB_HOLD) -> None:
        self.fixed = fixed
        self.cap = cap
        self.hold = hold
        self._size = fixed or 1
        self._batch = 0  # items the batch in hand started with
        self._since = 0.0  # when it was claimed

    def next(self) -> int:
        return self._size

    def claimed(self, count: int, now: float) -> None:
        """A claim brought ``count`` items at ``now`` (0: nothing was ready)."""
        self._batch, self._since = count, now

    def ran_out(self, now: float) -> None:
        """The batch in hand is used up at ``now``: its pace sizes the next claim."""
        if self.fixed is not None or self._batch == 0:
            return
        rate = self._batch / max(now - self._since, 1e-6)
        self._size = max(1, min(self.cap, math.ceil(rate * self.hold)))
        self._batch = 0


def claim_statement(subscription: Subscription, worker: str, *, skip_locked: bool) -> Update:
    """Up to ``:count`` of ``subscription``'s ready items, in fair turns across sites
    (:mod:`statusq.queues.db.turns`), claimed for ``worker`` at ``:now`` in one statement.  Built
    once per consumer: the same SQL each time, prepared once by the server."""
    values = {
        "claimed_by": worker,
        "claimed_at": bindparam("now"),
        "attempts": items.c.attempts + 1,
        "last_error": case((items.c.claimed_by.is_not(None), literal(STALE)), else_=items.c.last_error),
    }
    return fair_claim_statement(subscription, values, skip_locked=skip_locked)


def claim_params(count: int, now: float, claim_timeout: float, after: str = "") -> dict[str, Any]:
    """``after``: the last site the previous claim served, where this one's rotation starts."""
    return {"count": count, "now": now, "stale_before": now - claim_timeout, "after": after}


def id_in(postgres: bool) -> ColumnElement[bool]:
    """``id`` among the bound list ``:ids``: one array parameter on PostgreSQL (the same SQL
    whatever the count, so prepared once), an expanded IN list on SQLite (no arrays there)."""
    if postgres:
        return items.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    return items.c.id.in_(bindparam("ids", expanding=True))


def in_claim_order(rows: Sequence[Mapping[Any, Any]]) -> list[Mapping[Any, Any]]:
    """RETURNING promises no order: the order the claim chose them in."""
    return sorted(rows, key=lambda row: (-row["priority"], row["id"]))


def to_delivery(row: Mapping[Any, Any], worker: str, clock: Callable[[], float] = time.monotonic) -> Delivery:
    """A claimed row as a delivery; its token is (id, owner, when claimed on ``clock``)."""
    return Delivery(
        id=str(row["id"]),
        site=row["site"],
        transport=row["transport"],
        body=row["body"],
        content_type=row["content_type"],
        headers=json.loads(row["headers"]),
        attempt=row["attempts"],
        enqueued_at=row["enqueued_at"],
        priority=row["priority"],
        expires_at=row["expires_at"],
        token=(row["id"], worker, clock()),
        error=row["last_error"],
    )


def release_statement(worker: str, postgres: bool) -> Update:
    """Hand back the claimed items ``:ids`` that never started: unclaimed, their attempt not counted."""
    return (
        update(items)
        .where(id_in(postgres), items.c.claimed_by == worker)
        .values(claimed_by=None, claimed_at=None, attempts=items.c.attempts - 1)
    )
