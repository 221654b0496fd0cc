"""slixmpp on an asyncio loop in a thread that the XmppManager owns.

Why a thread and not the IoMaster's loop: the master runs one item at a time in its own thread,
and an item may take seconds (a slow ``xmppin`` handler, a database under load).  A connection
driven from that loop would stop answering the server's pings and miss its own for as long; on
its own loop in its own thread it keeps its sessions, pings and reconnects going whatever the
handlers do, like stomp.py's receiver thread does for the broker.  Nothing crosses between the
threads but: messages received (an :class:`~statusq.xmpp.inbox.Inbox` with a wake-up pipe the
master selects on), sends (a coroutine submitted to the loop, waited for with a timeout), and
plain counters.  All database and queue work stays in the master's thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from statusq.xmpp.client import SiteLink
from statusq.xmpp.errors import XmppUnavailable
from statusq.xmpp.inbox import Inbox
from statusq.xmpp.settings import XmppSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

_CALL_TIMEOUT = 5.0  # opening or closing a link is a few loop turns; never wait longer


class XmppConnections:
    """The loop thread and one :class:`SiteLink` per site on it.  Called from the master's thread;
    every call there is bounded by a timeout."""

    def __init__(self, inbox: Inbox | None = None, rng: random.Random | None = None) -> None:
        self.inbox = inbox or Inbox()
        self._rng = rng or random.Random()
        self._links: dict[str, SiteLink] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_log_loop_error)
        self._loop = loop
        self._thread = threading.Thread(target=self._run, args=(loop,), name="statusq-xmpp", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            loop.close()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        if self._loop is None or self._loop.is_closed():
            coro.close()
            raise XmppUnavailable("the XMPP thread is not running")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise XmppUnavailable(f"no answer from the XMPP thread within {timeout:g}s") from None
        finally:
            future.cancel()  # a no-op when done; else (timeout, item time limit) stop the work

    def open(self, site: str, settings: XmppSettings) -> None:
        """Connect ``site`` (again, if its settings changed); returns before the session is up."""
        self._call(self._open(site, settings), _CALL_TIMEOUT)

    async def _open(self, site: str, settings: XmppSettings) -> None:
        old = self._links.pop(site, None)
        if old is not None:
            await old.close(_CALL_TIMEOUT / 2)
        link = SiteLink(site, settings, self.inbox, self._rng)
        self._links[site] = link
        link.start()

    def close(self, site: str) -> None:
        self._call(self._close(site), _CALL_TIMEOUT)

    async def _close(self, site: str) -> None:
        link = self._links.pop(site, None)
        if link is not None:
            await link.close(_CALL_TIMEOUT / 2)

    def send(self, site: str, to: str, body: str, kind: str, timeout: float) -> None:
        link = self._links.get(site)
        if link is None:
            raise XmppUnavailable(f"site {site}: no connection")
        self._call(link.deliver(to, body, kind, timeout), timeout + 1.0)

    def reply(self, site: str, to: str, body: str) -> None:
        link = self._links.get(site)
        if link is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(link.reply, to, body)

    def states(self) -> dict[str, dict[str, Any]]:
        return {site: link.state.snapshot() for site, link in list(self._links.items())}

    def stop(self, timeout: float) -> None:
        """Close every link (bounded), then end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        with contextlib.suppress(XmppUnavailable):
            self._call(self._close_all(timeout * 0.6), timeout * 0.7)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout * 0.3)
        if thread.is_alive():
            log.warning("the XMPP thread did not end within %.1fs; leaving it (a daemon thread)", timeout)

    async def _close_all(self, timeout: float) -> None:
        links = list(self._links.values())  # kept: their states still report, as disconnected
        if links:
            await asyncio.wait([asyncio.ensure_future(link.close(timeout)) for link in links], timeout=timeout)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    log.error("xmpp loop: %s", context.get("message"), exc_info=exc)
