"""The web status and queue admin page, served by the supervisor (``[web] enabled = true``).

What every worker, site and periodic queue is doing, and Aegir's queue form, on its own port
(``[web] listen``, 127.0.0.1:9465 by default): ``/metrics`` may then be opened to a Prometheus
server elsewhere while the admin page stays on loopback.  The page keeps no books of its own; it
shows what the state files, the queue backend, the dispatcher's store and ``/metrics`` say.

The supervisor calls :func:`start_web` once and :meth:`Web.stop` at exit; nothing else of the
daemon knows the page exists.  A page that cannot start (its port taken) is logged and left out:
the daemon's work matters more than its status page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from statusq.config import Config
from statusq.web.app import App
from statusq.web.chart import RateHistory
from statusq.web.server import WebServer
from statusq.web.sources import QueueOpener, Sampler, metrics_url

log = logging.getLogger(__name__)


class Web:
    """A running page (or none, when disabled or it could not start); :meth:`stop` either way."""

    def __init__(self, server: WebServer | None = None, sampler: Sampler | None = None) -> None:
        self.server = server
        self.sampler = sampler

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.sampler is not None:
            self.sampler.stop()


def start_web(current: Callable[[], Config], open_queue: QueueOpener) -> Web:
    """Serve the page when ``[web] enabled``; ``current`` is the config in force (reloads change it),
    ``open_queue`` opens a short-lived queue manager for the backlog, dead letters and control."""
    config = current()
    if not config.web.enabled:
        return Web()
    history = RateHistory(config.web.history)
    sampler = Sampler(metrics_url(config), history, config.web.sample_every)
    server = WebServer(App(current, history, sampler, open_queue=open_queue), config.web.listen)
    try:
        server.start()
    except OSError as exc:
        log.error("web page not served: cannot listen on %s ([web] listen): %s", config.web.listen, exc)
        return Web()
    sampler.start()
    log.info("web page on http://%s/ (%s)", config.web.listen, "read-write" if config.web.token else "read-only")
    return Web(server, sampler)
