"""The dispatcher's tables, in the same database as the DB queue backend (``config.db_url``),
and the typed rows the store reads from them.

Kept in their own MetaData so that a STOMP deployment, whose items live in the broker, gets only
these three tables and not the item tables it never uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text

from statusq.dispatcher.schedule import ScheduleState

metadata = MetaData()

#: One row per declared queue: the operator's overrides, the schedule, the cluster-wide claim.
queues = Table(
    "statusq_dispatch_queues",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("transport", String(64), nullable=False),
    Column("plugin", String(128), nullable=False),
    # Operator overrides (statusq queues set); NULL: the plugin's declared value.
    Column("enabled", Boolean),
    Column("frequency", Float),
    Column("items", Integer),
    Column("timeout", Float),
    # The schedule.
    Column("next_due", Float),  # NULL: due at once (a new queue)
    Column("period", Integer, nullable=False, default=0),  # batch: periods started so far
    Column("period_start", Float),
    Column("total", Integer, nullable=False, default=0),  # batch: members
    Column("dispatched", Integer, nullable=False, default=0),  # batch: members dispatched this period
    Column("members_digest", String(64)),  # batch: fingerprint of the last member list synced
    Column("run_seq", Integer, nullable=False, default=0),  # the latest run's number
    Column("last_run", Float),  # when the latest run started (its first items were enqueued)
    Column("checked_at", Float),  # the last time a due run was looked at, even if it found nothing
    # One dispatcher at a time works on a due run; the claim lapses if that dispatcher dies.
    Column("claim_owner", String(128)),
    Column("claim_expires", Float),
    Column("last_error", Text),
    Column("error_at", Float),
)

#: One row per run (the last few per queue are kept): accounting, and what it is busy with.
runs = Table(
    "statusq_dispatch_runs",
    metadata,
    Column("queue", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),  # a run is recorded once: the key forbids a second
    Column("period", Integer, nullable=False, default=0),
    Column("dispatcher", String(128), nullable=False),
    Column("started", Float, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("planned", Integer, nullable=False),
    Column("items", Integer, nullable=False, default=0),  # enqueued so far
    Column("done", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),  # dead-lettered
    Column("sealed", Boolean, nullable=False, default=False),  # every item of the run is enqueued
    Column("finished", Float),  # sealed and every item settled
    Column("current", String(255)),  # the key a worker is handling now
    Column("hung_at", Float),  # when a dispatcher saw it running past its timeout
)
Index("statusq_dispatch_runs_open", runs.c.finished)

#: Batch queues' items.  ``rank`` orders the next picks: 0 for never dispatched, else when the item
#: was last processed (its handler succeeded) or, failing that, dispatched.  Every rank set during
#: a period is >= its start, so "not yet dispatched this period, least recently processed first"
#: is one range scan of the index below: ``rank < period_start ORDER BY rank``.
members = Table(
    "statusq_dispatch_members",
    metadata,
    Column("queue", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("site", String(255)),
    Column("rank", Float, nullable=False, default=0.0),
    Column("last_dispatched", Float),
    Column("last_processed", Float),
    Column("last_run", Integer),
)
Index("statusq_dispatch_members_next", members.c.queue, members.c.rank, members.c.key)


@dataclass(frozen=True, slots=True)
class RunRow:
    seq: int
    period: int
    dispatcher: str
    started: float
    timeout: float
    planned: int
    items: int
    done: int
    failed: int
    sealed: bool
    finished: float | None
    current: str | None
    hung_at: float | None

    @property
    def running(self) -> bool:
        return self.finished is None

    def hung(self, now: float) -> bool:
        """Running past its timeout: reported, and no longer holding its queue back."""
        return self.running and now > self.started + self.timeout


@dataclass(frozen=True, slots=True)
class QueueRow:
    name: str
    kind: str
    transport: str
    plugin: str
    enabled: bool | None
    frequency: float | None
    items: int | None
    timeout: float | None
    next_due: float | None
    period: int
    period_start: float | None
    total: int
    dispatched: int
    run_seq: int
    last_run: float | None
    checked_at: float | None
    claim_owner: str | None
    claim_expires: float | None
    last_error: str | None
    error_at: float | None
    run: RunRow | None

    def schedule(self) -> ScheduleState:
        return ScheduleState(self.next_due, self.period_start, self.total, self.dispatched, self.last_run)

    def claimed(self, now: float) -> bool:
        return self.claim_owner is not None and (self.claim_expires or 0.0) > now
