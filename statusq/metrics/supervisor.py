"""The supervisor's part of the metrics: the workers' folder, the endpoint, statsd state changes.

The folder (``<var_dir>/run/<supervisor pid>/metrics``) is created empty before the first fork
and named in ``PROMETHEUS_MULTIPROC_DIR``, which the workers inherit; it goes when the
supervisor ends.  Counters of workers that died are kept (a restart must not make a counter go
down), folded into archive files when each one is reaped (:mod:`statusq.metrics.archive`); their
live gauges are dropped.

Everything here is optional to the daemon: with ``[metrics] enabled = false`` each method does
nothing, and no failure in here stops the supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable

from prometheus_client import CollectorRegistry, multiprocess

from statusq.config import Config
from statusq.forklock import fork_safe
from statusq.metrics import MULTIPROC_ENV
from statusq.metrics.archive import Archive
from statusq.metrics.collector import Cached, DaemonCollector
from statusq.metrics.server import MetricsServer, daemon_registry
from statusq.metrics.sources import cluster, db_backlog, dispatch_queues, paused
from statusq.metrics.statsd import Statsd, counter, gauge
from statusq.state import RunDir

log = logging.getLogger(__name__)

FOLDER = "metrics"


class SupervisorMetrics:
    def __init__(self, config: Config, run_dir: RunDir) -> None:
        self.settings = config.metrics
        self.run_dir = run_dir
        self.folder = run_dir.path / FOLDER
        self.archive = Archive(self.folder)
        #: What the endpoint serves (None until started); the web page reads the same registry.
        self.registry: CollectorRegistry | None = None
        self.server: MetricsServer | None = None
        self._previous_env: str | None = None
        self._prepared = False
        statsd = self.settings.statsd if self.settings.enabled else None
        self.statsd = Statsd(statsd, self.settings.statsd_prefix) if statsd else None

    def prepare(self) -> None:
        """Before the first fork: an empty folder for the workers' values, named in the environment."""
        if not self.settings.enabled:
            return
        try:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder.mkdir(parents=True)
        except OSError as exc:
            log.error("metrics: cannot create %s (%s); workers keep their metrics to themselves", self.folder, exc)
            return
        self._previous_env = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = str(self.folder)
        self._prepared = True

    def start(self, config: Callable[[], Config]) -> None:
        """Serve ``/metrics``; ``config`` gives the config in force (it changes on reload)."""
        if not self._prepared:
            return
        try:
            self._start(config)
        except Exception:
            log.exception("metrics: cannot serve /metrics; the daemon runs without it")

    def _start(self, config: Callable[[], Config]) -> None:
        # Local: ActiveMQ's statistics come over stomp.py, which a database-backed daemon never loads.
        from statusq.metrics.activemq import ActiveMQBacklog  # noqa: PLC0415

        ttl = self.settings.backlog_ttl
        subsystem = config().queue.subsystem
        backlog = None
        if subsystem == "db":
            backlog = Cached(fork_safe(db_backlog(config)), ttl, "backlog")
        elif subsystem == "stomp":
            backlog = Cached(ActiveMQBacklog(config, self._served_groups), ttl, "ActiveMQ statistics")
        # The database sources are read holding the fork lock (statusq.forklock); ActiveMQ's
        # statistics come over a socket of their own and may take seconds: a fork need not wait.
        dispatch = Cached(fork_safe(dispatch_queues(config)), ttl, "dispatch queues")
        pauses = Cached(fork_safe(paused(config)), ttl, "pauses")
        daemons = Cached(fork_safe(cluster(config)), ttl, "cluster heartbeats")
        collector = DaemonCollector(self.run_dir, backlog, dispatch, pauses, daemons)
        registry = daemon_registry(self.folder, collector, self.archive)
        server = MetricsServer(registry, self.settings.listen)
        self.registry = registry
        if server.start():
            self.server = server

    def _served_groups(self) -> list[str] | None:
        """The groups this daemon's workers serve (None: all), as the supervisor wrote them."""
        state = self.run_dir.supervisor()
        if state is None:
            raise LookupError("the supervisor's state file is not written yet")
        return state.groups

    @property
    def address(self) -> tuple[str, int] | None:
        return self.server.address if self.server is not None else None

    def worker_started(self, slot: int, alive: int) -> None:
        if self.statsd is not None:
            s = self.statsd
            self.statsd.send(counter(s.name("workers", "started")), gauge(s.name("workers", "alive"), alive))

    def worker_exited(self, pid: int, cause: str, restart: str | None, alive: int) -> None:
        """A worker was reaped: drop its live gauges, fold its counters, tell statsd why it ended."""
        if self._prepared:
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(pid, str(self.folder))  # type: ignore[no-untyped-call]
            try:
                self.archive.fold(pid)
            except (OSError, ValueError) as exc:  # its files stay: counted still, just not folded
                log.warning("metrics: cannot fold worker %d's files into the archive: %s", pid, exc)
        if self.statsd is not None:
            s = self.statsd
            lines = [counter(s.name("workers", "exited", cause)), gauge(s.name("workers", "alive"), alive)]
            if restart is not None:
                lines.append(counter(s.name("workers", "restarts", restart)))
            s.send(*lines)

    def stop(self) -> None:
        """After the last worker: stop serving, forget the folder."""
        if self.server is not None:
            self.server.stop()
        self.server = None
        if self.statsd is not None:
            self.statsd.close()
        if not self._prepared:
            return
        self._prepared = False
        if self._previous_env is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = self._previous_env
        shutil.rmtree(self.folder, ignore_errors=True)
