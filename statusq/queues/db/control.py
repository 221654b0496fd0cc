"""Control commands on the database backend: a table of commands, read by every worker.

A sender inserts a row (the text, and the signature's headers when ``[queue.db]
control_secret`` is set; statusq.commands) and deletes rows older than
:data:`~statusq.defaults.DB_CONTROL_KEEP` in the same transaction.  Each worker's
:class:`DBControlChannel` reads the rows past the last id it saw, every ``control_poll``
seconds, and at once on PostgreSQL, where the insert NOTIFYs and the channel LISTENs.

A worker starts from the newest row there is: a new worker must not replay the ``shutdown``
that stopped its predecessor.  What it must know of the past (site removals, pauses) is state in
the shared store, read at boot (statusq.removals, statusq.pauses), not a command to catch up on.
So is what a worker misses while the database is away: the commands it then finds are checked
as any others, and one signed longer than ``control_max_age`` ago is refused as stale.

One gap, named rather than hidden: on PostgreSQL ids come from a sequence, and two commands sent
in the same instant may commit in the other order; a worker that read the later one first never
reads the other.  Operators send a command every few minutes, not two per millisecond, and the
state a lost one would have changed is re-read anyway.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, insert, select

from statusq.commands import sign
from statusq.defaults import DB_CONTROL_KEEP, DB_CONTROL_POLL, DB_CONTROL_TABLE
from statusq.errors import QueueError
from statusq.queues.base import ControlChannel, ControlMessage
from statusq.queues.db.database import Database
from statusq.queues.db.listen import drain, open_listener
from statusq.queues.db.schema import control, notify_stmt

log = logging.getLogger(__name__)

#: The "destination" of every command read from the table: what the control manager checks.
DESTINATION = DB_CONTROL_TABLE


def send(db: Database, text: str, secret: str | None, *, now: float | None = None) -> int:
    """Insert a command for every worker (signed with ``secret`` if given); its row id."""
    now = time.time() if now is None else now
    headers = sign(text, secret, now=now) if secret else {}
    with db.errors(), db.engine.begin() as conn:
        conn.execute(delete(control).where(control.c.created < now - DB_CONTROL_KEEP))
        row = {"command": text, "headers": json.dumps(headers), "created": now}
        row_id: int = conn.execute(insert(control).values(row).returning(control.c.id)).scalar_one()
        if db.is_postgres:
            conn.execute(notify_stmt(DB_CONTROL_TABLE, str(row_id)))
    return row_id


class DBControlChannel(ControlChannel):
    """One worker's reader of the command table.  ``since``: read the rows past this id (tests,
    tools); None: the rows sent from now on."""

    def __init__(
        self,
        db: Database,
        poll: float = DB_CONTROL_POLL,
        *,
        since: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.poll = poll
        self.clock = clock
        self._last: int | None = since  # None: not known yet (the database was away at start)
        self._due = 0.0
        self._waiting: list[ControlMessage] = []
        self._listen: Any = open_listener(db.engine, DB_CONTROL_TABLE) if db.is_postgres else None
        if since is None:
            self._start()

    def _start(self) -> None:
        try:
            with self.db.errors(), self.db.engine.connect() as conn:
                self._last = conn.execute(select(func.coalesce(func.max(control.c.id), 0))).scalar_one()
        except QueueError as exc:
            log.warning("cannot read the control table yet (tried again in %gs): %s", self.poll, exc)
        self._due = self.clock() + self.poll

    def filenos(self) -> list[int]:
        return [self._listen.fileno()] if self._listen is not None else []

    def drain_wakeups(self) -> None:
        if self._listen is None:
            return
        self._listen, woken = drain(self._listen)
        if woken:
            self._due = 0.0  # a NOTIFY: read now, not at the next poll

    def pending(self) -> bool:
        return bool(self._waiting)

    def timeout(self) -> float:
        if self._waiting:
            return 0.0
        return max(0.0, self._due - self.clock())

    def take(self) -> list[ControlMessage]:
        if self.clock() >= self._due:
            self._read()
        taken, self._waiting = self._waiting, []
        return taken

    def _read(self) -> None:
        self._due = self.clock() + self.poll
        if self._last is None:
            self._start()
            return
        query = select(control.c.id, control.c.command, control.c.headers).where(control.c.id > self._last)
        try:
            with self.db.errors(), self.db.engine.connect() as conn:
                rows = conn.execute(query.order_by(control.c.id)).all()
        except QueueError as exc:
            log.warning("cannot read the control table (tried again in %gs): %s", self.poll, exc)
            return
        for row_id, command, headers in rows:
            self._last = row_id
            self._waiting.append((_headers(headers), command.encode()))

    def close(self) -> None:
        if self._listen is not None:
            self._listen.close()
            self._listen = None


def _headers(text: str) -> dict[str, str]:
    """A row's headers, as a broker would deliver them: the destination is the reader's to say."""
    try:
        found = json.loads(text)
    except ValueError:
        found = None
    headers = {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
    headers["destination"] = DESTINATION
    return headers


__all__ = ["DESTINATION", "DBControlChannel", "send"]
