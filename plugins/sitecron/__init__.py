"""Per-site cron, as Aegir's ``hosting_cron``: every site's cron once per hour, spread evenly.

Batch queue ``cron``: its members are the enabled sites with a file in ``[sites] dir``, read
again at every run, so a site added or removed mid-hour is picked up and the load stays even.
With Aegir's numbers (1 h, 6 to 12 runs, 100 sites per run before adding one): 250 sites are 6
runs of 42 every 10 minutes; 5,000 sites are 12 runs of 417 every 5 minutes.

Transport ``sitecron`` runs what the site's file says::

    # sites/example.org.toml
    [settings.sitecron]
    url = "https://example.org/cron.php?cron_key=..."   # GET; any 2xx answer is success
    # or: command = ["drush", "--root=/var/www/example.org", "cron"]   # exit 0 is success
    timeout = 120                                        # seconds (default 60)

A site with neither has nothing to do.  A failure is retried, and a site whose cron failed is not
marked as done: it stays first in line for the next period.  Tune it with ``statusq queues set
cron --frequency 30m`` or switch it off with ``--enabled false``.
"""

from __future__ import annotations

import logging
import subprocess
import urllib.request
from typing import Any

from statusq import PluginApi, QueueHandler, QueueItem, current_site
from statusq.config import Config
from statusq.dispatcher import WorkItem
from statusq.sites import SiteTable

log = logging.getLogger("statusq.plugin.sitecron")

DEFAULT_TIMEOUT = 60.0


def enabled_sites(config: Config) -> list[WorkItem]:
    """Every site with a file that is not disabled; a broken file is skipped (and logged)."""
    table = SiteTable(config)
    return [WorkItem(name, site=name) for name in table.names if table.lookup(name).site is not None]


class SiteCron(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        settings: dict[str, Any] = current_site().settings.get("sitecron", {})
        timeout = float(settings.get("timeout", DEFAULT_TIMEOUT))
        if "url" in settings:
            return self._get(str(settings["url"]), timeout, item.site)
        if "command" in settings:
            return self._run([str(arg) for arg in settings["command"]], timeout, item.site)
        log.debug("[%s] no [settings.sitecron] url or command: nothing to do", item.site)
        return True

    def _get(self, url: str, timeout: float, site: str) -> bool:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"sitecron url must be http(s), not {url[:40]!r}")
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
        log.info("[%s] cron %s: HTTP %d", site, url.split("?", 1)[0], status)
        return 200 <= status < 300

    def _run(self, argv: list[str], timeout: float, site: str) -> bool:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-500:]}")
        log.info("[%s] cron: %s done", site, argv[0])
        return True


def register(api: PluginApi) -> None:
    api.register_handler("sitecron", SiteCron)
    api.register_queue(
        "cron",
        kind="batch",
        transport="sitecron",
        members=lambda: enabled_sites(api.config),
        frequency="1h",
        threshold=100,
        min_runs=6,
        max_runs=12,
        timeout="10m",
        description="Run every site's cron once per period",
    )
