"""The dispatcher's state in the database: settings, schedule, claims, runs and batch members.

Every change a dispatcher makes to a queue is an ``UPDATE … WHERE claim_owner = me``: a claim is
taken by one atomic conditional update (the row lock serializes it on PostgreSQL, the write lock
on SQLite) and lapses at ``claim_expires``, so two daemons never run one due run, and a crashed
dispatcher's claim is taken over a little later.  A run's row is keyed by (queue, seq): a run can
be recorded once only, whatever happens.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, insert, or_, select, update

from statusq.dispatcher.reports import WorkerReports
from statusq.dispatcher.schedule import Settings, rescheduled
from statusq.dispatcher.tables import QueueRow, RunRow, members, metadata, queues, runs
from statusq.errors import QueueError
from statusq.periodic import QueueSpec, WorkItem, as_work_item
from statusq.queues.db.engine import create_tables, db_errors, make_engine

log = logging.getLogger(__name__)

#: Runs kept per queue for accounting; older ones are deleted as new ones start.
KEEP_RUNS = 50
_IN_CHUNK = 500  # keys per IN (...) list: SQLite caps bound parameters


class ClaimLost(QueueError):
    """Our claim on a queue lapsed and another dispatcher may hold it: stop touching the queue."""


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for at in range(0, len(values), _IN_CHUNK):
        yield values[at : at + _IN_CHUNK]


def members_digest(values: Sequence[WorkItem | str]) -> str:
    """Fingerprint of a member list, taken before any validation: an unchanged list (the usual
    case) then costs one hash and no database read, even at a million members."""
    parts = [
        v if isinstance(v, str) else f"{v.key}\0{v.site or ''}" if isinstance(v, WorkItem) else repr(v) for v in values
    ]
    joined = "\n".join(parts).encode()
    return f"{len(parts)}:{hashlib.sha1(joined, usedforsecurity=False).hexdigest()}"


class DispatchStore(WorkerReports):
    """The dispatcher's tables at ``db_url``; what workers write there per item is
    in :class:`~statusq.dispatcher.reports.WorkerReports`."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._ready = False

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Driver errors become QueueError naming the database (without a password)."""
        with db_errors(self.engine):
            yield

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction, with the tables created on first use (two processes may race: retry)."""
        if not self._ready:
            create_tables(self.engine, metadata)
            self._ready = True
        with self.errors(), self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def _insert_ignore(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        # Local: SQLAlchemy's dialect modules, loaded on the first insert rather than by every importer.
        from sqlalchemy.dialects import postgresql, sqlite  # noqa: PLC0415

        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(table).on_conflict_do_nothing(), rows)

    # -- queue rows -------------------------------------------------------------------------------

    def ensure(self, specs: Iterable[QueueSpec]) -> None:
        """A row for every declared queue; kind and transport follow the declaration."""
        specs = list(specs)
        with self.begin() as conn:
            self._insert_ignore(
                conn,
                queues,
                [
                    {"name": s.name, "kind": s.kind, "transport": s.transport, "plugin": s.plugin, "period": 0}
                    | {"total": 0, "dispatched": 0, "run_seq": 0}
                    for s in specs
                ],
            )
            for s in specs:
                conn.execute(
                    update(queues)
                    .where(queues.c.name == s.name)
                    .where(or_(queues.c.kind != s.kind, queues.c.transport != s.transport, queues.c.plugin != s.plugin))
                    .values(kind=s.kind, transport=s.transport, plugin=s.plugin)
                )

    def rows(self, names: Iterable[str] | None = None) -> dict[str, QueueRow]:
        """Queue rows with their latest run: one query, whatever the number of items."""
        query = select(queues, runs).select_from(
            queues.outerjoin(runs, and_(runs.c.queue == queues.c.name, runs.c.seq == queues.c.run_seq))
        )
        if names is not None:
            query = query.where(queues.c.name.in_(sorted(names)))
        found: dict[str, QueueRow] = {}
        with self.begin() as conn:
            for row in conn.execute(query).mappings():
                run = None
                if row[runs.c.seq] is not None:
                    run = RunRow(**{c.name: row[c] for c in runs.c if c.name != "queue"})
                fields = {c.name: row[c] for c in queues.c if c.name != "members_digest"}
                found[row[queues.c.name]] = QueueRow(**fields, run=run)
        return found

    def row(self, name: str) -> QueueRow | None:
        return self.rows([name]).get(name)

    def set_overrides(self, name: str, values: dict[str, Any]) -> bool:
        """Store the operator's settings (keys of ``queues``; None clears an override)."""
        with self.begin() as conn:
            return bool(conn.execute(update(queues).where(queues.c.name == name).values(values)).rowcount)

    def change_settings(self, spec: QueueSpec, values: dict[str, Any], now: float) -> QueueRow:
        """Store an operator's overrides (``enabled``, ``frequency``, ``items``, ``timeout``; None
        drops one) and return the queue's row as it then is.

        The one place ``statusq queues set`` and the web page's form change a queue, so the two can
        never disagree: a new frequency or batch size also moves the next run, counted from the
        last one (see :func:`rescheduled`), or a queue set from hourly to every minute would still
        wait out the hour.
        """
        self.ensure([spec])
        row = self._existing(spec.name)
        values = dict(values)
        if "frequency" in values or "items" in values:
            current = {"enabled": row.enabled, "frequency": row.frequency, "items": row.items, "timeout": row.timeout}
            settings = Settings.effective(spec, **(current | values))
            # A queue that only ever found nothing to do counts from when it last looked.
            state = replace(row.schedule(), last_run=row.last_run or row.checked_at)
            values["next_due"] = rescheduled(state, settings, now)
        if not values:
            return row
        self.set_overrides(spec.name, values)
        return self._existing(spec.name)

    def _existing(self, name: str) -> QueueRow:
        row = self.row(name)
        if row is None:  # ensure() just made it: only someone dropping tables gets here
            raise QueueError(f"queue {name!r} has no row")
        return row

    # -- claims -----------------------------------------------------------------------------------

    def claim(self, name: str, owner: str, now: float, expires: float) -> bool:
        """Take the queue for one run; False when another dispatcher holds an unexpired claim."""
        free = or_(queues.c.claim_owner.is_(None), queues.c.claim_expires < now, queues.c.claim_owner == owner)
        stmt = update(queues).where(queues.c.name == name, free).values(claim_owner=owner, claim_expires=expires)
        with self.begin() as conn:
            return bool(conn.execute(stmt).rowcount)

    def _held(self, conn: Connection, name: str, owner: str, **values: Any) -> None:
        """Update our queue row, or raise ClaimLost if the claim is no longer ours."""
        stmt = update(queues).where(queues.c.name == name, queues.c.claim_owner == owner).values(values)
        if not conn.execute(stmt).rowcount:
            raise ClaimLost(f"queue {name!r}: claim lost (it lapsed and another dispatcher took over)")

    def renew(self, name: str, owner: str, expires: float) -> None:
        """Extend our claim before enqueueing more, or learn (ClaimLost) that it lapsed: checked
        *before* each turn, so a dispatcher that was merely slow never enqueues behind another."""
        with self.begin() as conn:
            self._held(conn, name, owner, claim_expires=expires)

    def release(self, name: str, owner: str) -> None:
        """Let go of a claim without changing anything else (a run abandoned before it started)."""
        with self.begin() as conn:
            conn.execute(
                update(queues)
                .where(queues.c.name == name, queues.c.claim_owner == owner)
                .values(claim_owner=None, claim_expires=None)
            )

    def skip(self, name: str, owner: str, now: float, next_due: float) -> None:
        """A due run with nothing to do: move on to the next due time and let go."""
        with self.begin() as conn:
            self._held(conn, name, owner, next_due=next_due, checked_at=now, last_error=None)
            self._held(conn, name, owner, claim_owner=None, claim_expires=None)

    def fail(self, name: str, owner: str, now: float, error: str, next_due: float | None) -> None:
        """Record why the run failed and let go; ``next_due`` backs off a run that never started."""
        values: dict[str, Any] = {"last_error": error[:2000], "error_at": now, "checked_at": now}
        if next_due is not None:
            values["next_due"] = next_due
        with self.begin() as conn:
            conn.execute(
                update(queues)
                .where(queues.c.name == name, queues.c.claim_owner == owner)
                .values(**values, claim_owner=None, claim_expires=None)
            )

    # -- batch members ----------------------------------------------------------------------------

    def sync_members(self, name: str, owner: str, values: Sequence[WorkItem | str]) -> tuple[int, int]:
        """Make the queue's members exactly ``values`` (keys or WorkItems); returns (added, removed).

        Counters follow in the same transaction: removing an item already dispatched this period
        lowers ``dispatched`` too, so the remaining runs stay even.
        """
        digest = members_digest(values)
        with self.begin() as conn:
            row = conn.execute(
                select(queues.c.members_digest, queues.c.period_start).where(queues.c.name == name)
            ).one()
            if row.members_digest == digest:
                return 0, 0
            items = [as_work_item(v) for v in values]
            wanted = {item.key: item.site for item in items}
            current = dict(conn.execute(select(members.c.key, members.c.site).where(members.c.queue == name)).all())
            added = [k for k in wanted if k not in current]
            removed = [k for k in current if k not in wanted]
            moved = [{"k": k, "s": wanted[k]} for k in wanted if k in current and current[k] != wanted[k]]
            rows = [{"queue": name, "key": k, "site": wanted[k], "rank": 0.0} for k in added]
            for at in range(0, len(rows), 5000):
                conn.execute(insert(members), rows[at : at + 5000])
            uncounted = 0
            start = row.period_start
            for keys in _chunks(removed):
                gone = delete(members).where(members.c.queue == name, members.c.key.in_(keys)).returning(members.c.rank)
                uncounted += sum(1 for (rank,) in conn.execute(gone) if start is not None and rank >= start)
            if moved:
                conn.execute(
                    update(members)
                    .where(members.c.queue == name, members.c.key == bindparam("k"))
                    .values(site=bindparam("s")),
                    moved,
                )
            self._held(
                conn,
                name,
                owner,
                total=queues.c.total + len(added) - len(removed),
                dispatched=queues.c.dispatched - uncounted,
                members_digest=digest,
            )
        if added or removed:
            log.info("queue %s: members +%d -%d (now %d)", name, len(added), len(removed), len(wanted))
        return len(added), len(removed)

    def begin_period(self, name: str, owner: str, now: float) -> None:
        """Start a period at ``now``, recounting (once a period, so a drifted counter heals)."""
        in_queue = members.c.queue == name
        total = select(func.count()).select_from(members).where(in_queue).scalar_subquery()
        done = select(func.count()).select_from(members).where(in_queue, members.c.rank >= now).scalar_subquery()
        with self.begin() as conn:
            self._held(conn, name, owner, period=queues.c.period + 1, period_start=now, total=total, dispatched=done)

    def pick(self, name: str, period_start: float, limit: int) -> list[WorkItem]:
        """The next ``limit`` members not yet dispatched this period, least recently processed
        first: one range scan of ``statusq_dispatch_members_next``, whatever the queue's size."""
        query = (
            select(members.c.key, members.c.site)
            .where(members.c.queue == name, members.c.rank < period_start)
            .order_by(members.c.rank, members.c.key)
            .limit(limit)
        )
        with self.begin() as conn:
            return [WorkItem(key, site) for key, site in conn.execute(query)]

    # -- runs -------------------------------------------------------------------------------------

    def open_run(self, name: str, owner: str, run: dict[str, Any], expires: float) -> None:
        """Create the run's row before its first item is enqueued, so that a worker fast enough to
        finish an item at once still finds the run to count it in.  ``run`` holds its fields."""
        with self.begin() as conn:
            self._held(conn, name, owner, claim_expires=expires)
            conn.execute(insert(runs).values(queue=name, items=0, done=0, failed=0, sealed=False, **run))
            conn.execute(delete(runs).where(runs.c.queue == name, runs.c.seq <= run["seq"] - KEEP_RUNS))

    def drop_run(self, name: str, seq: int) -> None:
        """A run that could not enqueue anything never happened."""
        with self.begin() as conn:
            conn.execute(delete(runs).where(runs.c.queue == name, runs.c.seq == seq))

    def start_run(self, name: str, owner: str, seq: int, started: float, next_due: float, expires: float) -> None:
        """Make it the queue's "last run" once its first items are enqueued (not before: a run that
        could not start is not a last run, as Aegir's was), and move the schedule on."""
        with self.begin() as conn:
            self._held(
                conn,
                name,
                owner,
                run_seq=seq,
                last_run=started,
                checked_at=started,
                next_due=next_due,
                claim_expires=expires,
                last_error=None,
            )

    def record_dispatched(
        self, name: str, owner: str, seq: int, keys: Sequence[str], now: float, expires: float, *, batch: bool
    ) -> None:
        """Count enqueued items into the run (and for a batch queue, mark them dispatched this
        period); renews the claim, so a long run in many turns keeps it."""
        with self.begin() as conn:
            extra = {"dispatched": queues.c.dispatched + len(keys)} if batch else {}
            self._held(conn, name, owner, claim_expires=expires, **extra)
            if batch:
                for chunk in _chunks(keys):
                    conn.execute(
                        update(members)
                        .where(members.c.queue == name, members.c.key.in_(chunk))
                        .values(rank=now, last_dispatched=now, last_run=seq)
                    )
            conn.execute(
                update(runs).where(runs.c.queue == name, runs.c.seq == seq).values(items=runs.c["items"] + len(keys))
            )

    def seal(self, name: str, owner: str, seq: int, now: float) -> None:
        """Every item of the run is enqueued: it finishes when they are settled, maybe already."""
        settled = runs.c.done + runs.c.failed >= runs.c["items"]
        with self.begin() as conn:
            conn.execute(
                update(runs)
                .where(runs.c.queue == name, runs.c.seq == seq)
                .values(sealed=True, finished=case((settled, now), else_=None))
            )
            conn.execute(
                update(queues)
                .where(queues.c.name == name, queues.c.claim_owner == owner)
                .values(claim_owner=None, claim_expires=None)
            )

    def mark_hung(self, now: float, candidates: Iterable[tuple[str, int]]) -> list[tuple[str, RunRow]]:
        """Mark these (queue, run) as hung; returns those this call marked, so that each hung run
        is reported once cluster-wide, by whichever dispatcher saw it first."""
        found = []
        with self.begin() as conn:
            for queue, seq in candidates:
                stmt = (
                    update(runs)
                    .where(
                        runs.c.queue == queue, runs.c.seq == seq, runs.c.finished.is_(None), runs.c.hung_at.is_(None)
                    )
                    .values(hung_at=now)
                    .returning(*(c for c in runs.c if c.name != "queue"))
                )
                found += [(queue, RunRow(**row)) for row in conn.execute(stmt).mappings()]
        return found
