"""One site's XMPP session with slixmpp: connect, log in, presence, keepalive, reconnect.

Runs on the loop of :class:`~statusq.xmpp.connections.XmppConnections`' thread.  Each connection
attempt gets a fresh ``ClientXMPP``: slixmpp's own reconnect loop backs off to five minutes with
no cap we can set, so we drive reconnects ourselves (``reconnect_delay`` doubling to
``reconnect_delay_max``, with jitter) and discard a client whose session ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from statusq.xmpp.errors import XmppUnavailable
from statusq.xmpp.inbox import Inbound, Inbox
from statusq.xmpp.settings import XmppSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class LinkState:
    """What a link reports about itself: written by the loop thread, read by the master's."""

    site: str
    jid: str
    server: str
    connected: bool = False
    connects: int = 0
    pings: int = 0
    last_rtt_ms: float | None = None
    last_ping_at: float | None = None
    connected_since: float | None = None
    last_error: str | None = None

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


class _Lost(Exception):
    """The session ended while we waited on it."""


class _LoginFailed(Exception):
    """No session this time: refused, unreachable, or too slow."""


def new_client(settings: XmppSettings) -> Any:
    """A ``ClientXMPP`` for one connection attempt; created in the loop thread (it binds the
    running loop)."""
    import slixmpp  # noqa: PLC0415 -- slixmpp: only in the xmpp group's worker, on its loop thread

    client = slixmpp.ClientXMPP(settings.full_jid, settings.password)
    client.enable_direct_tls = settings.tls == "direct"
    client.enable_starttls = settings.tls == "starttls"
    client.enable_plaintext = settings.tls == "none"
    if settings.tls == "none":  # validated: only to a loopback server
        client.plugin["feature_mechanisms"].unencrypted_scram = True
    client.whitespace_keepalive = False  # our XEP-0199 pings keep it alive and notice a dead one
    client.register_plugin("xep_0030")
    client.register_plugin("xep_0199")
    return client


async def _race(awaitable: Awaitable[T], lost: asyncio.Future[str], timeout: float) -> T:
    """``awaitable``'s result, unless the session ends first (:class:`_Lost`) or time runs out."""
    task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    waiting: set[asyncio.Future[Any]] = {task, lost}
    done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    if lost in done:
        raise _Lost(lost.result())
    raise TimeoutError


class SiteLink:
    """One site's session: connect, log in, presence, ping every ``ping_interval``, and on any
    loss reconnect with backoff.  Lives on the loop; never ends but by :meth:`close`."""

    def __init__(self, site: str, settings: XmppSettings, inbox: Inbox, rng: random.Random) -> None:
        self.site = site
        self.settings = settings
        self.inbox = inbox
        self.state = LinkState(site, settings.full_jid, f"{settings.host}:{settings.port}")
        self._rng = rng
        self._client: Any = None
        self._lost: asyncio.Future[str] | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._conflict = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"xmpp {self.site}")

    def _backoff(self, failures: int) -> float:
        s = self.settings
        if self._conflict:  # someone else logged in with our JID/resource: do not fight over it
            failures = 64
        base = min(s.reconnect_delay_max, s.reconnect_delay * 2.0 ** min(failures - 1, 32))
        return base * self._rng.uniform(0.8, 1.0)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                reason = await self._session()
                failures = 1
                problem = f"connection lost: {reason}"
            except _LoginFailed as exc:
                failures += 1
                problem = f"no session with {self.state.server}: {exc}"
            except Exception as exc:  # a bug or a slixmpp surprise: log it, never end the link
                failures += 1
                problem = f"session failed: {type(exc).__name__}: {exc}"
                log.exception("xmpp site=%s: session failed", self.site)
            if self._closing:
                break
            self.state.last_error = problem
            log.warning("xmpp site=%s: %s", self.site, problem)
            delay = self._backoff(failures)
            log.info("xmpp site=%s: reconnecting in %.1fs", self.site, delay)
            await asyncio.sleep(delay)

    async def _session(self) -> str:
        """One connection, from connect to loss; returns why it ended."""
        loop = asyncio.get_running_loop()
        client = new_client(self.settings)
        lost: asyncio.Future[str] = loop.create_future()

        def on_disconnected(event: Any) -> None:
            if not lost.done():
                lost.set_result(str(event) if event else "connection closed")

        def on_stream_error(error: Any) -> None:
            condition = error["condition"]
            self._conflict = condition == "conflict"
            log.warning("xmpp site=%s: stream error from the server: %s %s", self.site, condition, error["text"])

        client.add_event_handler("disconnected", on_disconnected)
        client.add_event_handler("stream_error", on_stream_error)
        client.add_event_handler("message", self._on_message)
        try:
            await self._login(client, lost)
            return await self._serve(client, lost)
        finally:
            self._discard(client)

    async def _login(self, client: Any, lost: asyncio.Future[str]) -> None:
        started: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def settle(problem: str | None) -> None:
            if not started.done():
                started.set_result(problem)

        client.add_event_handler("session_start", lambda _: settle(None))
        client.add_event_handler("failed_all_auth", lambda _: settle("login refused (check jid and password)"))
        client.add_event_handler("connection_failed", lambda e: settle(f"cannot connect: {e}"))
        s = self.settings
        if s.server:
            client.connect(s.host, s.port)
        else:
            client.connect()  # DNS SRV records of the JID's domain, as XMPP clients do
        try:
            problem = await _race(started, lost, s.connect_timeout)
        except _Lost as exc:
            raise _LoginFailed(f"disconnected while logging in: {exc}") from None
        except TimeoutError:
            raise _LoginFailed(f"no session within {s.connect_timeout:g}s") from None
        if problem is not None:
            raise _LoginFailed(problem)
        client.send_presence(pstatus=s.status or None)
        self._conflict = False
        self._client, self._lost = client, lost
        self._up.set()
        st = self.state
        st.connected, st.connects, st.connected_since, st.last_error = True, st.connects + 1, time.time(), None
        log.info("xmpp site=%s: connected as %s to %s", self.site, client.boundjid.full, st.server)

    async def _serve(self, client: Any, lost: asyncio.Future[str]) -> str:
        """Ping the server every ``ping_interval`` until the session ends; an unanswered ping
        ends it (a half-open TCP connection otherwise looks alive for hours)."""
        s = self.settings
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(lost), s.ping_interval)
                started = time.monotonic()
                try:
                    await _race(self._ping(client, s.ping_timeout), lost, s.ping_timeout + 1)
                except _Lost as exc:
                    return str(exc)
                except TimeoutError:
                    return f"no answer to a ping within {s.ping_timeout:g}s"
                st = self.state
                st.pings += 1
                st.last_rtt_ms, st.last_ping_at = (time.monotonic() - started) * 1e3, time.time()
                log.debug("xmpp ping site=%s rtt=%.1fms pings=%d", self.site, st.last_rtt_ms, st.pings)
        finally:
            self._up.clear()
            self._client = self._lost = None
            self.state.connected = False

    @staticmethod
    async def _ping(client: Any, timeout: float) -> None:
        """An XEP-0199 ping to our server; an error reply counts as an answer."""
        from slixmpp.exceptions import IqError, IqTimeout  # noqa: PLC0415 -- slixmpp, as new_client

        try:
            await client.plugin["xep_0199"].ping(timeout=timeout)
        except IqTimeout:
            raise TimeoutError from None
        except IqError:
            pass

    def _discard(self, client: Any) -> None:
        """Stop an attempt or a session for good, and slixmpp's own retries with it."""
        try:
            client.cancel_connection_attempt()
            if client.transport is not None:
                client.abort()
            # The send-queue task slixmpp keeps for a reconnect that will not come; left pending,
            # it is destroyed with the client ("Task was destroyed but it is pending!").
            filters = getattr(client, "_run_out_filters", None)
            if filters is not None:
                filters.cancel()
        except Exception:
            log.debug("discarding a client failed", exc_info=True)

    def _on_message(self, msg: Any) -> None:
        try:
            kind = msg["type"]
            if kind == "error":
                condition = msg["error"]["condition"]
                log.warning("xmpp site=%s: a message to %s bounced: %s", self.site, msg["from"], condition)
                return
            if kind not in ("chat", "normal") or not msg["body"]:
                return
            sender = msg["from"]
            if sender.bare == self.settings.jid:
                return  # our own message come back (sent to ourselves): answering would never end
            self.inbox.put(
                Inbound(
                    site=self.site,
                    sender=str(sender.bare),
                    from_jid=str(sender.full),
                    to=str(msg["to"].bare),
                    body=str(msg["body"]),
                    id=str(msg["id"] or ""),
                    type=str(kind),
                )
            )
        except Exception:  # never let an odd stanza end slixmpp's processing
            log.exception("xmpp site=%s: cannot take an incoming message", self.site)

    async def deliver(self, to: str, body: str, kind: str, timeout: float) -> None:
        """Send a message and wait for the server to have taken it: a ping sent after it is
        answered only once the server processed what came before on the stream (XMPP keeps
        order), so a message lost with a dropping connection is noticed and sent again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if not self._up.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout)
        client, lost = self._client, self._lost
        if client is None or lost is None:
            problem = self.state.last_error or "connecting"
            raise XmppUnavailable(f"site {self.site}: not connected to {self.state.server} ({problem})")
        client.send_message(mto=to, mbody=body, mtype=kind)
        remaining = max(0.1, deadline - loop.time())
        try:
            await _race(self._ping(client, remaining), lost, remaining + 0.5)
        except _Lost as exc:
            raise XmppUnavailable(
                f"site {self.site}: connection lost before the server took the message: {exc}"
            ) from None
        except TimeoutError:
            raise XmppUnavailable(
                f"site {self.site}: the server did not confirm the message within {timeout:g}s"
            ) from None

    def reply(self, to: str, body: str) -> None:
        """Fire and forget: an answer to a command, lost if the connection is down right now."""
        client = self._client
        if client is None:
            log.warning("xmpp site=%s: reply to %s not sent: not connected", self.site, to)
            return
        client.send_message(mto=to, mbody=body, mtype="chat")

    async def close(self, timeout: float) -> None:
        """Say goodbye (unavailable presence, end of stream), then stop for good."""
        self._closing = True
        client = self._client
        if client is not None:
            try:
                client.send_presence(ptype="unavailable")
                await asyncio.wait_for(client.disconnect(wait=timeout / 2), timeout)
            except Exception:
                log.debug("xmpp site=%s: disconnect failed", self.site, exc_info=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, Exception):
                await asyncio.wait_for(self._task, timeout)
        self.state.connected = False
