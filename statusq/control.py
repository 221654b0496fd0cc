"""Control commands, broadcast to every daemon and applied between items.

They travel on a STOMP topic (``[queue.stomp] control_channel``), or, on the database backend,
in a table every worker reads (statusq.queues.db.control).  What a site command changes is also
the shared store's state (statusq.removals), so no worker depends on not missing one.

A command is text: ``update-site NAME``, ``remove-site NAME``, ``reload``, ``restart``,
``shutdown`` or ``pauses`` (re-read the pause table now).  It is accepted only from the
configured control destination and, when a secret is configured, only signed with it, fresh and
never seen before (statusq.commands); anything else is logged and ignored, never fatal.
(StatusNet's control channel never worked: its handler had the wrong signature.  This one is
tested end to end.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from statusq.commands import ControlCommand, ReplayGuard, accept, command_name
from statusq.config import Config
from statusq.defaults import CONTROL_MAX_AGE, DB_CONTROL_TABLE
from statusq.errors import ConfigError, DataError
from statusq.io.manager import IoManager
from statusq.middleware import MiddlewareChain
from statusq.queues.base import ControlChannel
from statusq.removals import SiteRemovals
from statusq.sites import SiteTable

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ControlActions:
    """What reload, restart and shutdown mean in this process (a worker under a supervisor
    forwards them; a lone worker acts itself)."""

    reload: Callable[[], None]
    restart: Callable[[], None]
    shutdown: Callable[[], None]
    #: Re-read the pauses now: this worker's own (its processor's gate), set by build_worker.
    pauses: Callable[[], None] = lambda: None


class ControlManager(IoManager):
    """Applies control messages from the worker's control channel, between items (polled first
    in the worker's loop; the queue listener ends a burst of items when one waits), and keeps
    the shared store's site removals applied (``removals``: re-read after every command and
    every ``site_recheck``).  ``inbox`` None: no channel, the removals only."""

    name = "control"

    def __init__(
        self,
        inbox: ControlChannel | None,
        sites: SiteTable,
        actions: ControlActions,
        *,
        channel: str | None,
        secret: str | None,
        max_age: float = CONTROL_MAX_AGE,
        middleware: MiddlewareChain | None = None,
        clock: Callable[[], float] = time.time,
        removals: SiteRemovals | None = None,
    ) -> None:
        self.inbox = inbox
        self.removals = removals
        self.sites = sites
        self.actions = actions
        self.channel = channel
        self.secret = secret
        self.guard = ReplayGuard(max_age)
        self.clock = clock
        self.middleware = middleware if middleware is not None else MiddlewareChain()

    def filenos(self) -> list[int]:
        return self.inbox.filenos() if self.inbox is not None else []

    def timeout(self) -> float:
        due = self.inbox.timeout() if self.inbox is not None else math.inf
        return min(due, self.removals.due_in()) if self.removals is not None else due

    def poll(self) -> bool:
        did = self._take() if self.inbox is not None else False
        if self.removals is not None and (did or self.removals.due_in() <= 0):
            self.removals.read()
        return did

    def _take(self) -> bool:
        assert self.inbox is not None
        did = False
        self.inbox.drain_wakeups()
        for headers, body in self.inbox.take():
            try:
                command = accept(
                    headers, body, channel=self.channel, secret=self.secret, guard=self.guard, now=self.clock()
                )
            except DataError as exc:
                log.warning("control message ignored: %s", exc)
                self._observe(command_name(body), "refused")
                continue
            log.info("control: %s", command)
            self.apply(command)
            self._observe(command.command, "applied")
            did = True
        return did

    def stop(self) -> None:
        if self.inbox is not None:
            self.inbox.close()

    def _observe(self, command: str, result: str) -> None:
        self.middleware.after_control(command, result)  # isolated: monitoring never stops a command

    def apply(self, command: ControlCommand) -> None:
        if self.removals is not None:
            self.removals.heard(command)
        if command.command == "update-site" and command.site:
            self.sites.reload(command.site)
        elif command.command == "remove-site" and command.site:
            self.sites.remove(command.site)
        elif command.command == "reload":
            self.actions.reload()
        elif command.command == "restart":
            self.actions.restart()
        elif command.command == "shutdown":
            self.actions.shutdown()
        elif command.command == "pauses":
            self.actions.pauses()


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """Where a backend's commands come from, and how they are signed."""

    channel: str | None
    secret: str | None
    max_age: float


def control_settings(config: Config) -> ControlSettings:
    """``[queue.db]``'s on the database backend, else ``[queue.stomp]``'s (STOMP, memory)."""
    if config.queue.subsystem == "db":
        db = config.queue.db
        return ControlSettings(DB_CONTROL_TABLE, db.control_secret, db.control_max_age)
    stomp = config.queue.stomp
    return ControlSettings(stomp.control_channel, stomp.control_secret, stomp.control_max_age)


def check_signing(config: Config) -> None:
    """A daemon on a broker refuses to start with a control channel anyone there could use.

    Why at start, not at config load: a web application that only enqueues reads the same file
    and must not fail for it; a producer never accepts commands."""
    stomp = config.queue.stomp
    if config.queue.subsystem != "stomp" or not stomp.control_channel or stomp.control_secret:
        return
    if stomp.control_unsigned:
        log.warning("control commands on %s are accepted unsigned (control_unsigned = true)", stomp.control_channel)
        return
    raise ConfigError(
        f"control channel {stomp.control_channel} without control_secret: anyone who can publish there could "
        "shut every daemon down; set control_secret (16 characters or more, the same for every host), or "
        'control_unsigned = true to accept unsigned commands, or control_channel = "" to have no channel',
        file=config.source,
        key="queue.stomp.control_secret",
    )
