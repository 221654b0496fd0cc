"""XmppManager: the IoManager that owns a worker's XMPP connections, one per site.

It runs in the worker of ``statusq daemon --group xmpp --workers 1`` (see :func:`statusq.xmpp.
xmpp_managers`).  The sessions themselves live on a thread of their own (:mod:`statusq.xmpp.
client`); this side, in the master's thread, does what touches the database and the queue:

* which sites have a connection: those whose site file has a valid ``[settings.xmpp]`` table,
  looked at again every few seconds, so ``update-site`` and ``reload`` add, change or drop one;
* incoming chat: ``confirm CODE`` is answered here (:mod:`statusq.xmpp.confirm`), anything else
  becomes an ``xmppin`` item for the plugins' handlers;
* sending, for the ``xmppout`` and ``xmppconfirm`` handlers of the same process;
* a status file (``var_dir/xmpp-status.json``): per site, connected or not, pings answered,
  round-trip time, last error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from statusq.config import Config
from statusq.errors import ConfigError, DataError, QueueError
from statusq.io.manager import IoManager
from statusq.queues.base import QueueManager
from statusq.registry import HandlerRegistry
from statusq.sites import SiteTable
from statusq.xmpp import owner
from statusq.xmpp.api import IN_TRANSPORT
from statusq.xmpp.confirm import REPLIES, USAGE, ConfirmStore, describe_duration, parse_command
from statusq.xmpp.connections import XmppConnections
from statusq.xmpp.errors import XmppError, XmppUnavailable
from statusq.xmpp.inbox import Inbound, Inbox
from statusq.xmpp.settings import SETTINGS_KEY, XmppSettings, parse_settings, site_file

log = logging.getLogger(__name__)

RECONCILE_EVERY = 5.0  # seconds between looks at the site files' [settings.xmpp]
STATUS_EVERY = 1.0  # the status file is rewritten at most this often, and only when it changed
RETRY_INBOX = 1.0  # after the queue refused an incoming message, try again this much later
STOP_TIMEOUT = 4.0  # closing every connection at shutdown
FLUSH_TIMEOUT = 2.0  # queueing what was received but not yet queued, at shutdown


class Connections(Protocol):
    """What the manager needs of :class:`~statusq.xmpp.connections.XmppConnections` (a fake in tests)."""

    inbox: Inbox

    def start(self) -> None: ...
    def open(self, site: str, settings: XmppSettings) -> None: ...
    def close(self, site: str) -> None: ...
    def send(self, site: str, to: str, body: str, kind: str, timeout: float) -> None: ...
    def reply(self, site: str, to: str, body: str) -> None: ...
    def states(self) -> dict[str, dict[str, Any]]: ...
    def stop(self, timeout: float) -> None: ...


def parse_jid(address: str) -> Any:
    from slixmpp.jid import JID, InvalidJID  # noqa: PLC0415 -- slixmpp: only where a JID is checked fully

    try:
        jid = JID(address)
    except InvalidJID as exc:
        raise DataError(f"{address!r} is not a JID: {exc}") from None
    if not jid.domain:
        raise DataError(f"{address!r} is not a JID")
    return jid


def bare_jid(address: str) -> str:
    """``User@Example.org/res`` → ``user@example.org``, as the server compares them."""
    return str(parse_jid(address).bare)


class XmppManager(IoManager):
    name = "xmpp"

    def __init__(
        self,
        config: Config,
        sites: SiteTable,
        registry: HandlerRegistry,
        queue_manager: QueueManager,
        *,
        connections: Connections | None = None,
        store: ConfirmStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sites = sites
        self.registry = registry
        self.queue = queue_manager
        self.sites_dir = config.sites.dir
        self.lock = owner.OwnerLock(Path(config.var_dir) / "xmpp.lock")
        self.status_path = Path(config.var_dir) / "xmpp-status.json"
        self.connections: Connections = connections or XmppConnections()
        self.clock = clock
        self._db_url = config.db_url
        self._store = store
        self._settings: dict[str, XmppSettings] = {}  # sites with a link, and its settings
        self._raw: dict[str, Any] = {}  # the table each link was opened with, to notice changes
        self._problems: dict[str, str] = {}  # sites without a link, and why
        self._started = False
        self._stopped = False
        self._standby_logged = False
        self._next_reconcile = 0.0
        self._next_status = 0.0
        self._retry_inbox_at = 0.0
        self._last_status: str | None = None
        #: Handlers call in from the worker's pool threads (``concurrency`` > 1) while the master's
        #: thread reconciles: whoever starts the connections, opens a site's link or opens the
        #: confirmation store does it alone, so two threads never open one site's link twice (the
        #: second open would close the first's session) or leak a second store.  Re-entrant: a
        #: handler's first look at a new site takes ownership, then syncs, under the one guard.
        self._guard = threading.RLock()

    @property
    def inbox(self) -> Inbox:
        return self.connections.inbox

    # -- the IoManager contract ---------------------------------------------------------------

    def start(self) -> None:
        quiet = logging.getLogger("slixmpp")
        if quiet.level == logging.NOTSET:
            # slixmpp logs every stanza at DEBUG, SASL exchanges included: keep it out of our logs.
            quiet.setLevel(logging.WARNING)
        owner.set_active(self)
        self._take_ownership()

    def filenos(self) -> list[int]:
        return [self.inbox.fileno()]

    def timeout(self) -> float:
        due = min(self._next_reconcile, self._next_status)
        if len(self.inbox) and self._started:
            due = min(due, self._retry_inbox_at)
        return due - self.clock()

    def poll(self) -> bool:
        self.inbox.drain_wakeups()
        now = self.clock()
        if now >= self._next_reconcile:
            self._next_reconcile = now + RECONCILE_EVERY
            if self._take_ownership():
                self.reconcile()
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY
            self._write_status()
        if not len(self.inbox) or now < self._retry_inbox_at:
            return False
        return self._take_one()

    def busy(self) -> bool:
        return bool(len(self.inbox))

    def stop(self) -> None:
        if owner.active() is self:
            owner.set_active(None)
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self.connections.stop(STOP_TIMEOUT)
            self._flush_inbox()
            self._write_status()
        if self._store is not None:
            self._store.close()
        self.inbox.close()
        self.lock.release()

    # -- ownership and sites ------------------------------------------------------------------

    def _take_ownership(self) -> bool:
        """Start the connections if this process holds the lock; else stay on standby."""
        if self._started or self._stopped:
            return self._started and not self._stopped
        with self._guard:
            return self._take_ownership_now()

    def _take_ownership_now(self) -> bool:
        if self._started or self._stopped:  # another thread did, while this one waited
            return self._started and not self._stopped
        if not self.lock.acquire():
            if not self._standby_logged:
                log.error(
                    "xmpp: on standby, no connection opened: pid %s owns the XMPP connections (%s). Run "
                    "`statusq daemon --group xmpp --workers 1`, once per host; this worker takes over if it exits",
                    self.lock.holder(),
                    self.lock.path,
                )
                self._standby_logged = True
            return False
        self.connections.start()
        self._started = True
        log.info("xmpp: this worker (pid %d) owns the XMPP connections", os.getpid())
        return True

    def reconcile(self) -> None:
        """Open, reopen or close links so they match the sites' current ``[settings.xmpp]``."""
        with self._guard:
            self._reconcile()

    def _reconcile(self) -> None:
        wanted = {}
        for name in self.sites.names:
            site = self.sites.lookup(name).site
            raw = site.settings.get(SETTINGS_KEY) if site is not None else None
            if raw is not None:
                wanted[name] = raw
        for name in [n for n in self._raw if n not in wanted]:
            self._drop(name, "no [settings.xmpp] any more (or the site was disabled or removed)")
        for name, raw in wanted.items():
            self._sync(name, raw)

    def _sync(self, name: str, raw: Any) -> None:
        if name in self._raw and self._raw[name] == raw:
            return
        try:
            settings = parse_settings(raw, file=site_file(self.sites_dir, name))
        except ConfigError as exc:
            if self._problems.get(name) != str(exc):
                log.error("xmpp site=%s: not connected: %s", name, exc)
            self._drop(name, str(exc))
            return
        try:
            self.connections.open(name, settings)
        except XmppUnavailable as exc:  # the XMPP thread did not answer: try again next look
            log.error("xmpp site=%s: cannot open its connection: %s", name, exc)
            self._problems[name] = str(exc)
            return
        self._raw[name], self._settings[name] = raw, settings
        self._problems.pop(name, None)
        log.info("xmpp site=%s: connecting as %s to %s:%d", name, settings.full_jid, settings.host, settings.port)

    def _drop(self, name: str, why: str) -> None:
        if name in self._raw:
            try:
                self.connections.close(name)
            except XmppUnavailable as exc:
                log.error("xmpp site=%s: closing its connection failed: %s", name, exc)
            log.info("xmpp site=%s: disconnected: %s", name, why)
        self._raw.pop(name, None)
        self._settings.pop(name, None)
        self._problems[name] = why

    def settings(self, site: str) -> XmppSettings:
        """The site's settings, for a handler; a site added since the last look is looked at now."""
        if not self._take_ownership():
            raise XmppUnavailable(f"this worker is on standby: pid {self.lock.holder()} owns the XMPP connections")
        if site not in self._settings:
            with self._guard:
                found = self.sites.lookup(site).site
                raw = found.settings.get(SETTINGS_KEY) if found is not None else None
                if raw is not None:
                    self._sync(site, raw)
        settings = self._settings.get(site)
        if settings is None:
            why = self._problems.get(site) or f"no [settings.xmpp] in {site_file(self.sites_dir, site)}"
            raise XmppError(f"site {site}: no XMPP connection: {why}")
        return settings

    # -- sending, for the handlers ------------------------------------------------------------

    def send(self, site: str, to: str, body: str, kind: str = "chat") -> None:
        """Send from the site's JID; returns once the server has taken the message.  Raises
        :class:`XmppUnavailable` when it cannot now (the item is retried)."""
        settings = self.settings(site)
        self.connections.send(site, str(parse_jid(to).full), body, kind, settings.send_timeout)

    def send_confirmation(self, site: str, address: str, user_ref: str | None = None) -> None:
        """A new code for ``address``, stored before it is sent: a code that arrives always works."""
        settings = self.settings(site)
        address = bare_jid(address)
        code = self.store().issue(site, address, settings.confirm_ttl, user_ref)
        text = settings.confirm_text.format(site=site, code=code, valid=describe_duration(settings.confirm_ttl))
        self.connections.send(site, address, text, "chat", settings.send_timeout)
        log.info("xmpp confirm site=%s address=%s: code sent", site, address)

    def store(self) -> ConfirmStore:
        if self._store is None:
            with self._guard:
                if self._store is None:
                    self._store = ConfirmStore.open(self._db_url)
        return self._store

    # -- incoming -----------------------------------------------------------------------------

    def _take_one(self) -> bool:
        message = self.inbox.peek()
        if message is None:
            return False
        try:
            self._dispatch(message)
        except QueueError as exc:
            # The database or broker is down: keep the message and try again shortly.
            log.error("xmpp site=%s: message from %s kept for later: %s", message.site, message.sender, exc)
            self._retry_inbox_at = self.clock() + RETRY_INBOX
            return False
        except Exception:
            log.exception("xmpp site=%s: message from %s dropped", message.site, message.sender)
        self.inbox.pop()
        return True

    def _dispatch(self, message: Inbound) -> None:
        if any(message.sender == settings.jid for settings in self._settings.values()):
            # One of our own sites: two bots answering each other would never stop.
            log.debug("xmpp site=%s: message from our own %s ignored", message.site, message.sender)
            return
        command = parse_command(message.body)
        if command is not None:
            self._answer_confirm(message, command.code)
            return
        if self.registry.get(IN_TRANSPORT) is None:
            log.info(
                "xmpp site=%s: message from %s ignored: no plugin handles %r",
                message.site,
                message.sender,
                IN_TRANSPORT,
            )
            return
        item_id = self.queue.enqueue(message.payload(), IN_TRANSPORT, site=message.site)
        log.debug(
            "xmpp site=%s: message from %s queued as %s id=%s", message.site, message.sender, IN_TRANSPORT, item_id
        )

    def _answer_confirm(self, message: Inbound, code: str | None) -> None:
        settings = self._settings.get(message.site)
        if settings is None:
            return  # the site lost its connection since; the user may try again
        if code is None:
            text = USAGE
            outcome = "no code given"
        else:
            verdict = self.store().check(message.site, message.sender, code, settings.confirm_max_failures)
            text = REPLIES[verdict].format(site=message.site, address=message.sender)
            outcome = verdict.value
        log.info("xmpp confirm site=%s address=%s: %s", message.site, message.sender, outcome)
        self.connections.reply(message.site, message.from_jid, text)

    def _flush_inbox(self) -> None:
        """Queue what was received but not yet handed on, as far as the queue lets us in time."""
        deadline = self.clock() + FLUSH_TIMEOUT
        while len(self.inbox) and self.clock() < deadline:
            if not self._take_one():
                break
        if len(self.inbox):
            log.error("xmpp: %d received message(s) could not be queued before exiting", len(self.inbox))

    # -- status -------------------------------------------------------------------------------

    def _write_status(self) -> None:
        if not self._started:
            return  # a standby worker must not overwrite what the owner reports
        status = {
            "pid": os.getpid(),
            "sites": self.connections.states(),
            "problems": dict(sorted(self._problems.items())),
        }
        text = json.dumps(status, indent=1, sort_keys=True)
        if text == self._last_status:
            return
        tmp = self.status_path.with_name(f".{self.status_path.name}.{os.getpid()}")
        try:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text)
            os.replace(tmp, self.status_path)  # readers never see half a file
        except OSError as exc:
            log.warning("xmpp: cannot write %s: %s", self.status_path, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._last_status = text
