"""Where the page's facts come from, each from its owner: no bookkeeping of the page's own.

Processes: the state files ``statusq status`` reads; every host's daemons: their heartbeats in
the shared store (``statusq status --all``).  Backlog, dead letters, the control channel:
the queue backend, on a short-lived connection (the supervisor forks; a pooled connection would
be shared with its workers).  Rates and broker-side counts: the daemon's ``/metrics``, sampled by
one thread.  Sites: the sites folder, read as a worker reads it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from statusq.cluster import read as read_cluster
from statusq.config import Config
from statusq.metrics.scrape import Samples, ScrapeError, fetch
from statusq.queues.base import BacklogRow, DeadLetter, QueueManager
from statusq.queues.cancels import Cancelled, Purged
from statusq.sites import SiteTable
from statusq.state import SupervisorState, WorkerState, running_daemons
from statusq.web.chart import RateHistory

if TYPE_CHECKING:
    from statusq.queues.db.daemons import DaemonRow  # SQLAlchemy: only once the cluster is read
    from statusq.queues.db.pauses import Pause  # SQLAlchemy: only once pauses are read

log = logging.getLogger(__name__)

HANDLED = "statusq_items_total"

#: Opens a short-lived queue manager for a config: the assembly layer's, handed down to the page.
QueueOpener = Callable[[Config], QueueManager]


def metrics_url(config: Config) -> str | None:
    """The daemon's own ``/metrics``, reached over loopback when it listens on every address."""
    if not config.metrics.enabled:
        return None
    host, _, port = config.metrics.listen.rpartition(":")
    if port == "0":
        return None  # a port picked at start: nobody outside the exporter knows it
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host in ("::", "[::]"):
        host = "[::1]"
    return f"http://{host}:{port}/metrics"


class Sampler:
    """Scrapes ``/metrics`` every ``every`` seconds in a thread of its own, feeding the rate
    history; request threads read :attr:`latest` and never wait for a scrape."""

    def __init__(self, url: str | None, history: RateHistory, every: float) -> None:
        self.url = url
        self.history = history
        self.every = every
        self.latest: Samples | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statusq-web-sampler", daemon=True)

    def start(self) -> None:
        if self.url is None:
            self.history.failed("metrics disabled ([metrics] enabled = false)")
            return
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sample(self) -> None:
        assert self.url is not None
        try:
            samples = fetch(self.url, timeout=min(5.0, max(1.0, self.every)))
        except ScrapeError as exc:
            self.latest = None
            self.history.failed(str(exc))
            return
        self.latest = samples
        self.history.add_total(time.time(), samples.sum(HANDLED, outcome="handled"))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception:  # a sampler that dies leaves a chart that silently stops
                log.exception("web page: sampling %s failed", self.url)
            self._stop.wait(self.every)


def daemons(config: Config) -> list[tuple[SupervisorState, list[WorkerState]]]:
    return running_daemons(config.var_dir)


def cluster(config: Config) -> list[DaemonRow]:
    """Every host's daemons, from their heartbeats in the shared store at ``db_url``."""
    return read_cluster(config)


def backlog(open_queue: QueueOpener, config: Config) -> list[BacklogRow] | None:
    """None: the backend cannot count it cheaply (STOMP: never by reading the dead letters)."""
    with open_queue(config) as qm:
        return qm.backlog()


def dead_letters(open_queue: QueueOpener, config: Config, limit: int) -> list[DeadLetter]:
    with open_queue(config) as qm:
        return qm.dead_letters(limit)


def requeue(open_queue: QueueOpener, config: Config, ids: Iterable[str] | None) -> int:
    with open_queue(config) as qm:
        return qm.requeue_dead(ids)


def purge(open_queue: QueueOpener, config: Config, ids: Iterable[str] | None) -> int:
    with open_queue(config) as qm:
        return qm.purge_dead(ids)


def purge_backlog(open_queue: QueueOpener, config: Config, site: str, transport: str | None) -> Purged:
    with open_queue(config) as qm:
        return qm.purge(site, transport, "from the web page")


def cancel_items(open_queue: QueueOpener, config: Config, ids: list[str]) -> Cancelled:
    with open_queue(config) as qm:
        return qm.cancel(ids, "from the web page")


def pauses(open_queue: QueueOpener, config: Config) -> list[Pause]:
    with open_queue(config) as qm:
        return qm.pauses()


def pause(open_queue: QueueOpener, config: Config, scope: dict[str, str], reason: str) -> Pause:
    with open_queue(config) as qm:
        return qm.pause(**scope, reason=reason)


def resume(open_queue: QueueOpener, config: Config, scope: dict[str, str]) -> bool:
    with open_queue(config) as qm:
        return qm.resume(**scope)


def control_channel(config: Config) -> str | None:
    """Why site commands cannot be sent, or None when they can."""
    if config.queue.subsystem == "db":
        return None  # a table of the queue's database (statusq.queues.db.control)
    if config.queue.subsystem != "stomp":
        return f"the {config.queue.subsystem!r} backend has no control channel (it needs STOMP or a database)"
    if not config.queue.stomp.control_channel:
        return "no control channel configured ([queue.stomp] control_channel)"
    return None


def send_control(open_queue: QueueOpener, config: Config, text: str) -> None:
    with open_queue(config) as qm:
        qm.send_control(text)


@dataclass(frozen=True, slots=True)
class SiteRow:
    name: str
    status: str  # "served", or why not
    has_file: bool


def site_file(config: Config, name: str) -> Path:
    return Path(config.sites.dir) / f"{name}.toml"


def removed_sites(config: Config) -> dict[str, float]:
    """The shared store's site removals (``statusq control remove-site``, from anywhere), with when."""
    from statusq.queues.db.removals import read_removed  # noqa: PLC0415 - SQLAlchemy: only when asked

    return read_removed(config.db_url)


def sites(
    config: Config,
    seen: Iterable[str] = (),
    removed: Mapping[str, float] | None = None,
    stored: Mapping[str, float] | None = None,
) -> list[SiteRow]:
    """Every site with a file, the sites items were seen for, those removed from the page
    (``removed``: when) and those the shared store holds removed (``stored``); each with what a
    worker that read the folder and the store now would do with its items."""
    removed, stored = removed or {}, stored or {}
    table = SiteTable(config)
    folder = Path(config.sites.dir)
    files = {p.name.removesuffix(".toml") for p in folder.glob("*.toml")} if folder.is_dir() else set()
    rows = []
    for name in sorted(files | set(seen) | set(removed) | set(stored)):
        if name in removed:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(removed[name]))
            status = f"removed (remove-site sent from this page at {when})"
        elif name in stored:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stored[name]))
            status = f"removed (remove-site at {when})"
        else:
            status = table.lookup(name).problem or "served"
        rows.append(SiteRow(name, status, name in files))
    return rows
