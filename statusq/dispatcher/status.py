"""What ``statusq queues`` shows: each queue's settings, schedule, last run and status.

Computed from the stored rows and the clock at display time, so "hung" is right even when every
dispatcher is stuck (a hung run is *also* marked and logged by the next dispatcher tick).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from statusq.dispatcher.schedule import Settings, batch_shape, settings_for
from statusq.periodic import QueueSpec

if TYPE_CHECKING:
    from statusq.dispatcher.tables import QueueRow


@dataclass(frozen=True, slots=True)
class QueueView:
    name: str
    kind: str
    plugin: str
    transport: str
    status: str  # ok, running, hung, error, disabled
    enabled: bool
    frequency: float
    #: Items per run: configured (serial, or an operator's fixed batch size) and computed now.
    items: int
    items_per_run: int
    runs_per_period: int
    interval: float
    timeout: float
    total: int | None  # batch: members; serial: None (the source decides)
    period: int
    dispatched_this_period: int
    last_run: float | None
    next_run: float | None  # None: now (or never, when disabled)
    running_for: float | None
    run: int | None
    run_items: int
    run_done: int
    run_failed: int
    last_duration: float | None
    current_item: str | None
    last_error: str | None
    overrides: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _status(settings: Settings, row: QueueRow | None, now: float) -> str:
    if not settings.enabled:
        return "disabled"
    run = row.run if row is not None else None
    if run is not None and run.hung(now):
        return "hung"
    if run is not None and run.running:
        return "running"
    if row is not None and row.last_error and (row.last_run is None or (row.error_at or 0) >= row.last_run):
        return "error"
    return "ok"


def queue_view(spec: QueueSpec, row: QueueRow | None, now: float) -> QueueView:
    settings = settings_for(spec, row)
    run = row.run if row is not None else None
    total = row.total if row is not None else 0
    if spec.kind == "batch":
        shape = batch_shape(total, settings)
        per_run, runs, interval = shape.items_per_run, shape.runs, shape.interval
    else:
        per_run, runs, interval = settings.items, 1, settings.frequency
    overrides = {}
    if row is not None:
        candidates = {"enabled": row.enabled, "frequency": row.frequency, "items": row.items, "timeout": row.timeout}
        overrides = {key: value for key, value in candidates.items() if value is not None}
    return QueueView(
        name=spec.name,
        kind=spec.kind,
        plugin=spec.plugin,
        transport=spec.transport,
        status=_status(settings, row, now),
        enabled=settings.enabled,
        frequency=settings.frequency,
        items=settings.items,
        items_per_run=per_run,
        runs_per_period=runs,
        interval=interval,
        timeout=settings.timeout,
        total=total if spec.kind == "batch" else None,
        period=row.period if row is not None else 0,
        dispatched_this_period=row.dispatched if row is not None else 0,
        last_run=row.last_run if row is not None else None,
        next_run=row.next_due if row is not None and settings.enabled else None,
        running_for=now - run.started if run is not None and run.running else None,
        run=run.seq if run is not None else None,
        run_items=run.items if run is not None else 0,
        run_done=run.done if run is not None else 0,
        run_failed=run.failed if run is not None else 0,
        last_duration=run.finished - run.started if run is not None and run.finished is not None else None,
        current_item=run.current if run is not None and run.running else None,
        last_error=row.last_error if row is not None else None,
        overrides=overrides,
    )


def human_duration(seconds: float) -> str:
    """``0.4s``, ``42s``, ``1m30s``, ``10m``, ``1h30m``, ``2d``: short enough for a table column."""
    if seconds < 10:
        return f"{seconds:.1f}s".replace(".0s", "s")
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 10 and rest:
        return f"{minutes}m{rest}s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{round(hours / 24)}d"


def table_row(view: QueueView, now: float) -> list[str]:
    items = str(view.items_per_run)
    if view.kind == "batch":
        items += f" x{view.runs_per_period}"
    last = f"{human_duration(now - view.last_run)} ago" if view.last_run is not None else "never"
    if not view.enabled:
        next_run = "-"
    elif view.next_run is None or view.next_run <= now:
        next_run = "now"
    else:
        next_run = f"in {human_duration(view.next_run - now)}"
    running = human_duration(view.running_for) if view.running_for is not None else "-"
    return [
        view.name,
        view.kind,
        "yes" if view.enabled else "no",
        human_duration(view.frequency),
        items,
        "-" if view.total is None else str(view.total),
        last,
        next_run,
        running,
        view.status,
    ]


TABLE_HEADERS = [
    "NAME",
    "KIND",
    "ENABLED",
    "FREQUENCY",
    "ITEMS/RUN",
    "TOTAL",
    "LAST RUN",
    "NEXT RUN",
    "RUNNING FOR",
    "STATUS",
]


def current_views(db_url: str, specs: list[QueueSpec]) -> list[QueueView]:
    """What ``statusq queues`` and the web page show, row for row, read from the store now
    (rows for newly declared queues are created on the way)."""
    from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415 -- SQLAlchemy: only where queues are shown

    store = DispatchStore(db_url)
    try:
        store.ensure(specs)
        rows = store.rows()
    finally:
        store.close()
    now = time.time()
    return [queue_view(spec, rows.get(spec.name), now) for spec in specs]
