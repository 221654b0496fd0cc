"""Removed sites, in every worker, on every backend: the shared store's removals kept applied.

``statusq control remove-site X`` writes X to the shared store (statusq.queues.db.removals)
before it broadcasts the command, so a worker's set of removed sites is the store's, not the sum
of the messages it happened to receive.  A worker reads it at boot, again at once after any
control command (a ``reload`` re-reads every site file, which would otherwise serve a removed
site again), and every ``[queue] site_recheck`` seconds: a worker that was reconnecting to its
broker when the command went out, or that refused it as stale after the database came back,
follows within that long.  What a removed site's items meet is unchanged: dead-lettered with
the reason "was removed (remove-site)" (statusq.sites).

A store that cannot be read keeps the last set known, with the commands heard since applied to
it: a database hiccup must neither serve a removed site again nor remove every site.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from statusq.commands import ControlCommand
from statusq.defaults import SITE_RECHECK
from statusq.errors import StatusqError
from statusq.sites import SiteTable

log = logging.getLogger(__name__)


class SiteRemovals:
    """One worker's copy of the removed sites, read through ``load`` (``RemovalStore.list``)
    and applied to ``sites``."""

    def __init__(
        self,
        load: Callable[[], set[str]],
        sites: SiteTable,
        *,
        recheck: float = SITE_RECHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.sites = sites
        self.recheck = recheck
        self.clock = clock
        self.known: set[str] = set()
        self._heard: set[str] = set()  # removals heard as commands since the last read
        self._due = 0.0

    def due_in(self) -> float:
        return self._due - self.clock()

    def heard(self, command: ControlCommand) -> None:
        """A site command was applied: follow it now, whether or not the store can be read."""
        if command.site is None:
            return
        if command.command == "remove-site":
            self.known.add(command.site)
            self._heard.add(command.site)
        elif command.command == "update-site":
            self.known.discard(command.site)
            self._heard.discard(command.site)

    def read(self) -> None:
        """Read the store now, and apply what it holds (or the last set known) to the sites."""
        self._due = self.clock() + self.recheck
        try:
            found = self.load()
        except StatusqError as exc:  # the database is down, or db_url is wrong
            log.warning("cannot read the site removals, keeping the %d known: %s", len(self.known), exc)
        else:
            for site in sorted(self._heard - found):
                log.warning(
                    "remove-site %s was received, but the shared store (db_url) does not hold it: unless an "
                    "update-site followed, this host's db_url is not the one the command was sent with",
                    site,
                )
            if found != self.known:
                log.info("removed sites now: %s", ", ".join(sorted(found)) or "none")
            self.known = found
        self._heard.clear()
        self.sites.set_removed(self.known)
