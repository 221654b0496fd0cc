"""Wiring the metrics model into one worker process (see :func:`statusq.worker.build_worker`)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from statusq.config import MetricsConfig
from statusq.io.manager import IoManager
from statusq.metrics import MULTIPROC_ENV
from statusq.metrics.hooks import FLUSH_DELAY, MetricsHooks
from statusq.metrics.labels import SiteLabels
from statusq.metrics.model import ItemMetrics, use_multiprocess_files
from statusq.metrics.statsd import Statsd

#: The file in the daemon's metrics folder where "auto" site labels are admitted (labels.py).
SITE_LABELS_FILE = "site-labels"


class MetricsManager(IoManager):
    """Writes the metrics middleware's counts to the series soon after they change
    (:meth:`MetricsHooks.flush`), and at the end flushes the last ones and closes the statsd
    socket."""

    name = "metrics"

    def __init__(self, hooks: MetricsHooks) -> None:
        self.hooks = hooks

    def timeout(self) -> float:
        since = self.hooks.dirty_since
        return math.inf if since is None else since + FLUSH_DELAY - time.monotonic()

    def poll(self) -> bool:
        self.hooks.flush()
        return False

    def stop(self) -> None:
        self.hooks.flush()
        if self.hooks.statsd is not None:
            self.hooks.statsd.close()


@dataclass(frozen=True, slots=True)
class WorkerMetrics:
    hooks: MetricsHooks
    manager: MetricsManager
    #: True when the values go to the supervisor's folder (a daemon's worker).
    shared: bool


def worker_metrics(config: MetricsConfig, transports: set[str]) -> WorkerMetrics | None:
    """The hook and manager of a worker counting ``transports`` (the registered ones); None under
    ``[metrics] enabled = false``."""
    if not config.enabled:
        return None
    shared = use_multiprocess_files()
    folder = Path(os.environ[MULTIPROC_ENV]) if shared else None
    sites = SiteLabels(config.site_labels, config.max_sites, folder / SITE_LABELS_FILE if folder else None)
    statsd = Statsd(config.statsd, config.statsd_prefix) if config.statsd else None
    hooks = MetricsHooks(ItemMetrics(), sites, transports, statsd)
    return WorkerMetrics(hooks, MetricsManager(hooks), shared)
