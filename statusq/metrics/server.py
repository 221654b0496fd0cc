"""The one ``/metrics`` endpoint of a daemon, served by its supervisor on a thread of its own.

One port for every worker (a port per worker is how Dramatiq's 9191 clashes came about): the
registry adds up the files the workers write (``MultiProcessCollector``) and the supervisor's
own view (:class:`~statusq.metrics.collector.DaemonCollector`).  A port that cannot be bound is
an error in the log and nothing more: monitoring never stops work.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from statusq.metrics.archive import Archive, LockedCollector

log = logging.getLogger(__name__)


def daemon_registry(folder: Path, collector: Collector, archive: Archive) -> CollectorRegistry:
    """The workers' files in ``folder`` (read only while ``archive`` folds none), and the
    supervisor's collector: the whole model."""
    registry = CollectorRegistry()
    files = MultiProcessCollector(None, path=str(folder))  # type: ignore[no-untyped-call]
    registry.register(LockedCollector(files, archive.lock))
    registry.register(collector)
    return registry


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9464`` for IPv6) as (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsServer:
    """``/metrics`` over HTTP on a daemon thread; :meth:`stop` ends it."""

    def __init__(self, registry: CollectorRegistry, listen: str) -> None:
        self.registry = registry
        self.listen = listen
        self._server: Any = None
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._close_in_child)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens (the real port when ``listen`` asked for port 0); None when not."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> bool:
        host, port = split_listen(self.listen)
        try:
            self._server, self._thread = start_http_server(port, host, self.registry)
        except OSError as exc:
            log.error(
                "metrics: cannot listen on %s (%s); the daemon runs without /metrics ([metrics] listen)",
                self.listen,
                exc.strerror or exc,
            )
            return False
        self._thread.name = "statusq-metrics"
        host, port = self.address or (host, port)
        log.info("metrics: serving http://%s:%d/metrics", host, port)
        return True

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _close_in_child(self) -> None:
        """A forked worker must not hold the listening socket: after the supervisor ended, the
        port would stay bound (and connections hang) until the last worker is gone."""
        server, self._server = self._server, None
        if server is not None:
            server.socket.close()
