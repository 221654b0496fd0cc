"""The database backend's operator side: counts are one query, dead letters a table."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from statusq.commands import parse_command
from statusq.errors import QueueError
from statusq.queues.base import Admin, BacklogRow, Capability, DeadLetter
from statusq.queues.db import control
from statusq.queues.db.database import Database
from statusq.queues.db.schema import dead, items

_REQUEUE_COLUMNS = [
    "id",
    "site",
    "transport",
    "priority",
    "content_type",
    "body",
    "headers",
    "attempts",
    "enqueued_at",
    "available_at",
]


class DBAdmin(Admin):
    capabilities = frozenset(
        {
            Capability.BACKLOG,
            Capability.DEAD_LETTERS,
            Capability.REQUEUE,
            Capability.PURGE,
            Capability.RELEASE_CLAIMS,
            Capability.CONTROL,
        }
    )

    def __init__(self, db: Database, control_secret: str | None = None) -> None:
        self.db = db
        self.control_secret = control_secret

    def send_control(self, text: str) -> None:
        """A row of the control table, read by every worker (statusq.queues.db.control)."""
        parse_command(text)  # a bad command is refused here, not by every worker
        control.send(self.db, text, self.control_secret)

    def release_claims(self, owner: str, reason: str) -> int:
        """Give back what a dead worker held, at once; the attempt counts (its handler may have
        run), so an item that keeps killing workers is still dead-lettered."""
        values = {"claimed_by": None, "claimed_at": None, "available_at": time.time(), "last_error": reason}
        with self.db.errors(), self.db.engine.begin() as conn:
            released: int = conn.execute(update(items).where(items.c.claimed_by == owner).values(values)).rowcount
            if released:
                self.db.notify(conn, "released")
        return released

    def backlog(self) -> list[BacklogRow]:
        now = time.time()
        unclaimed = items.c.claimed_by.is_(None)
        counts = select(
            items.c.site,
            items.c.transport,
            func.sum(case((and_(unclaimed, items.c.available_at <= now), 1), else_=0)),
            func.sum(case((and_(unclaimed, items.c.available_at > now), 1), else_=0)),
            func.sum(case((unclaimed, 0), else_=1)),
        ).group_by(items.c.site, items.c.transport)
        dead_counts = select(dead.c.site, dead.c.transport, func.count()).group_by(dead.c.site, dead.c.transport)
        rows: dict[tuple[str, str], BacklogRow] = {}
        with self.db.errors(), self.db.engine.connect() as conn:
            for site, transport, ready, delayed, in_flight in conn.execute(counts):
                rows[site, transport] = BacklogRow(site, transport, ready, delayed, in_flight)
            for site, transport, count in conn.execute(dead_counts):
                rows.setdefault((site, transport), BacklogRow(site, transport)).dead = count
        return [rows[key] for key in sorted(rows)]

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        query = select(dead).order_by(dead.c.dead_at.desc(), dead.c.id.desc()).limit(limit)
        with self.db.errors(), self.db.engine.connect() as conn:
            return [
                DeadLetter(
                    id=str(r["id"]),
                    site=r["site"],
                    transport=r["transport"],
                    attempts=r["attempts"],
                    error=r["error"],
                    enqueued_at=r["enqueued_at"],
                    dead_at=r["dead_at"],
                    content_type=r["content_type"],
                    body=r["body"],
                    headers=json.loads(r["headers"]),
                )
                for r in conn.execute(query).mappings()
            ]

    def _dead_filter(self, ids: Iterable[str] | None) -> Any:
        if ids is None:
            return literal(True)
        return dead.c.id.in_([int(i) for i in ids if str(i).isdigit()])

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        chosen = self._dead_filter(None if ids is None else list(ids))
        now = time.time()
        copy = select(
            dead.c.id,
            dead.c.site,
            dead.c.transport,
            dead.c.priority,
            dead.c.content_type,
            dead.c.body,
            dead.c.headers,
            literal(0),
            dead.c.enqueued_at,
            literal(now),
        ).where(chosen)
        try:
            with self.db.errors(), self.db.engine.begin() as conn:
                moved = len(conn.execute(insert(items).from_select(_REQUEUE_COLUMNS, copy).returning(items.c.id)).all())
                conn.execute(delete(dead).where(chosen))
                self.db.notify(conn, "requeue")
        except QueueError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                raise QueueError("a dead letter's id is queued again already; purge it instead") from exc
            raise
        return moved

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        chosen = self._dead_filter(None if ids is None else list(ids))
        with self.db.errors(), self.db.engine.begin() as conn:
            return conn.execute(delete(dead).where(chosen)).rowcount
