"""What the supervisor asks the databases at scrape time: the backlog, the periodic queues, the
pauses, the cluster's heartbeats.

Each call opens its own short-lived connection and closes it: the supervisor forks workers, and a
pooled connection would be copied into each of them (as for releasing a dead worker's claims).
The numbers are the ones ``statusq status`` and ``statusq queues`` show.

STOMP: a broker's queue depths are the broker's to tell; ActiveMQ's statistics plugin is read
by :mod:`statusq.metrics.activemq` (browsing the dead-letter destination per scrape would cost
every message), and RabbitMQ's management API is not read, so there the series are left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from statusq.metrics.collector import Backlog, DispatchQueue

if TYPE_CHECKING:
    from statusq.config import Config
    from statusq.dispatcher.tables import QueueRow
    from statusq.queues.db.daemons import DaemonRow
    from statusq.queues.db.pauses import Pause


def db_backlog(config: Callable[[], Config]) -> Callable[[], Backlog]:
    """Totals of ``statusq status`` for the DB backend."""

    def load() -> Backlog:
        from statusq.queues.db import DBQueueManager  # noqa: PLC0415 -- SQLAlchemy: only when scraped on db

        with DBQueueManager(config()) as manager:
            rows = manager.admin.backlog() or []  # the database can always count
        return Backlog(
            ready=sum(r.ready for r in rows),
            delayed=sum(r.delayed for r in rows),
            in_flight=sum(r.in_flight for r in rows),
            dead=sum(r.dead for r in rows),
        )

    return load


def dispatch_queues(
    config: Callable[[], Config], clock: Callable[[], float] = time.time
) -> Callable[[], list[DispatchQueue]]:
    """The periodic queues' rows; none (and no tables created) where no plugin ever declared one."""

    def load() -> list[DispatchQueue]:
        # Local: SQLAlchemy, only once scraped (hence the noqa).
        from sqlalchemy import inspect  # noqa: PLC0415

        from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415
        from statusq.dispatcher.tables import queues  # noqa: PLC0415

        store = DispatchStore(config().db_url)
        try:
            with store.errors():
                if not inspect(store.engine).has_table(queues.name):
                    return []
            return dispatch_view(store.rows().values(), clock())
        finally:
            store.close()

    return load


def paused(config: Callable[[], Config]) -> Callable[[], list[Pause]]:
    """The pauses in force (the shared store's table at ``db_url``, whatever the backend)."""

    def load() -> list[Pause]:
        from statusq.queues.db.pauses import PauseStore  # noqa: PLC0415 -- SQLAlchemy: only when scraped

        store = PauseStore.open(config().db_url)
        try:
            return store.list()
        finally:
            store.close()

    return load


def cluster(config: Callable[[], Config]) -> Callable[[], list[DaemonRow]]:
    """Every daemon's heartbeat in the shared store at ``db_url``, whatever the backend."""

    def load() -> list[DaemonRow]:
        from statusq.queues.db.daemons import read_cluster  # noqa: PLC0415 -- SQLAlchemy: only when scraped

        return read_cluster(config().db_url)

    return load


def dispatch_view(rows: Iterable[QueueRow], now: float) -> list[DispatchQueue]:
    """The series' values from stored rows alone: the supervisor loads no plugin, so a serial
    queue's declared size is known from its latest run (or an operator's override)."""
    found = []
    for row in sorted(rows, key=lambda r: r.name):
        run = row.run
        if row.kind == "batch":
            items: int | None = row.total
        else:
            items = row.items if row.items is not None else run.planned if run is not None else None
        found.append(
            DispatchQueue(
                name=row.name,
                last_run=row.last_run,
                running=run is not None and run.running and not run.hung(now),
                hung=run is not None and run.hung(now),
                items=items,
            )
        )
    return found
