"""The cluster view's table, shared by ``statusq status --all`` and the web page: every daemon
that beats in the shared store (:mod:`statusq.queues.db.daemons`), alive or gone."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from statusq.config import Config

if TYPE_CHECKING:
    from statusq.queues.db.daemons import DaemonRow  # SQLAlchemy: only once the cluster is read

CLUSTER_COLUMNS = ("HOST", "PID", "STATUS", "STATE", "WORKERS", "IN HAND", "VERSION", "UP", "LAST BEAT", "BACKEND")


def read(config: Config) -> list[DaemonRow]:
    """Every daemon in the store at ``db_url``, whatever the queue backend."""
    from statusq.queues.db.daemons import read_cluster  # noqa: PLC0415 -- SQLAlchemy: only when asked

    return read_cluster(config.db_url)


def cluster_row(daemon: DaemonRow, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    return [
        daemon.host,
        str(daemon.pid),
        daemon.status(now),
        daemon.state,
        f"{daemon.workers}/{daemon.wanted}",
        str(daemon.in_hand),
        daemon.version,
        age(now - daemon.started_at),
        f"{age(now - daemon.beat_at)} ago",
        f"{daemon.backend} [{daemon.config_id}]",
    ]


def cluster_json(daemon: DaemonRow, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {**asdict(daemon), "status": daemon.status(now)}


def counts(daemons: list[DaemonRow], now: float | None = None) -> dict[str, int]:
    """How many daemons are alive and how many gone: ``statusq_cluster_daemons{state}``."""
    now = time.time() if now is None else now
    found = {"alive": 0, "gone": 0}
    for daemon in daemons:
        found[daemon.status(now)] += 1
    return found


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
