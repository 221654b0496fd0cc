"""statusq.xmpp.client and .connections without a server: the inbox, the backoff, the thread's bounds."""

from __future__ import annotations

import random
import select
import socket
import time

import pytest

from statusq.xmpp.client import SiteLink
from statusq.xmpp.connections import XmppConnections
from statusq.xmpp.errors import XmppUnavailable
from statusq.xmpp.inbox import Inbound, Inbox
from statusq.xmpp.settings import XmppSettings, parse_settings


def settings(**extra: object) -> XmppSettings:
    raw = {"jid": "bot@localhost", "password": "pw", "server": "127.0.0.1:5222", "tls": "none", **extra}
    return parse_settings(raw, file="t.toml")


def test_the_inbox_wakes_the_master_and_keeps_order() -> None:
    inbox = Inbox()
    try:
        assert select.select([inbox.fileno()], [], [], 0)[0] == []
        first = Inbound("a", "c@x", "c@x/r", "bot@a", "one", "1", "chat")
        inbox.put(first)
        inbox.put(Inbound("a", "c@x", "c@x/r", "bot@a", "two", "2", "chat"))

        assert select.select([inbox.fileno()], [], [], 0)[0] == [inbox.fileno()]
        inbox.drain_wakeups()
        assert select.select([inbox.fileno()], [], [], 0)[0] == []
        assert len(inbox) == 2 and inbox.peek() == first
        inbox.pop()
        assert inbox.peek() is not None and inbox.peek().body == "two"  # type: ignore[union-attr]
    finally:
        inbox.close()
    inbox.close()  # twice is harmless


def test_reconnect_delays_double_up_to_the_cap_with_jitter() -> None:
    link = SiteLink("a", settings(reconnect_delay="1s", reconnect_delay_max="10s"), Inbox(), random.Random(1))

    delays = [link._backoff(n) for n in range(1, 8)]

    for n, delay in enumerate(delays, start=1):
        base = min(10.0, 2.0 ** (n - 1))
        assert 0.8 * base <= delay <= base
    # Another client took over our JID and resource: do not fight it, wait the longest
    link._conflict = True
    assert 8.0 <= link._backoff(1) <= 10.0


def test_a_site_whose_server_is_down_reports_it_and_sends_fail_in_bounded_time() -> None:
    # Given a port nothing listens on (bound, never listening, so nobody else can take it)
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        connections = XmppConnections(rng=random.Random(1))
        connections.start()
        try:
            connections.open(
                "a", settings(server=f"127.0.0.1:{port}", reconnect_delay="50ms", reconnect_delay_max="100ms")
            )

            # Then the link keeps trying and says why it has no session
            deadline = time.monotonic() + 10
            while "cannot connect" not in str(connections.states()["a"]["last_error"]):
                assert time.monotonic() < deadline, connections.states()
                time.sleep(0.02)
            assert connections.states()["a"]["connected"] is False

            # And a send gives up after its timeout with the reason, for the item to be retried
            with pytest.raises(XmppUnavailable, match=r"not connected to 127\.0\.0\.1"):
                connections.send("a", "carol@localhost", "hi", "chat", timeout=0.2)
            with pytest.raises(XmppUnavailable, match="no connection"):
                connections.send("b", "carol@localhost", "hi", "chat", timeout=0.2)
        finally:
            connections.stop(timeout=3)
    with pytest.raises(XmppUnavailable, match="not running"):
        connections.open("a", settings())


def test_the_xmppin_payload() -> None:
    message = Inbound("a", "c@x", "c@x/r", "bot@a", "hi", "7", "chat")

    assert message.payload() == {"sender": "c@x", "from": "c@x/r", "to": "bot@a", "body": "hi", "id": "7"}
