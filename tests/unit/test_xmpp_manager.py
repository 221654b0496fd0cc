"""XmppManager with fake connections: which sites connect, what incoming chat becomes, who owns
the connections, and what the handlers send."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config
from statusq.defaults import DEFAULT_PRIORITY
from statusq.errors import DataError, QueueError
from statusq.item import QueueItem
from statusq.runtime import Runtime
from statusq.xmpp import owner
from statusq.xmpp.confirm import USAGE, ConfirmStore, Verdict
from statusq.xmpp.errors import XmppError, XmppUnavailable
from statusq.xmpp.handlers import XmppConfirmHandler, XmppOutHandler
from statusq.xmpp.inbox import Inbound, Inbox
from statusq.xmpp.manager import RECONCILE_EVERY, RETRY_INBOX, XmppManager
from statusq.xmpp.settings import XmppSettings
from tests.unit.fakes import write_plugin
from tests.unit.test_xmpp_api import RecordingQueue

RECORDER = """
    import statusq.xmpp
    from statusq import QueueHandler

    class In(QueueHandler):
        def handle(self, item):
            return True

    def register(api):
        statusq.xmpp.register(api)
        api.register_handler("xmppin", In, group="xmpp")
"""


class FakeConnections:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.started = self.stopped = False
        self.opened: dict[str, XmppSettings] = {}
        self.opens = 0
        self.closed: list[str] = []
        self.sent: list[tuple[str, str, str, str, float]] = []
        self.replies: list[tuple[str, str, str]] = []
        self.down: str | None = None

    def start(self) -> None:
        self.started = True

    def open(self, site: str, settings: XmppSettings) -> None:
        self.opened[site] = settings
        self.opens += 1

    def close(self, site: str) -> None:
        self.opened.pop(site, None)
        self.closed.append(site)

    def send(self, site: str, to: str, body: str, kind: str, timeout: float) -> None:
        if self.down:
            raise XmppUnavailable(self.down)
        self.sent.append((site, to, body, kind, timeout))

    def reply(self, site: str, to: str, body: str) -> None:
        self.replies.append((site, to, body))

    def states(self) -> dict[str, dict[str, Any]]:
        return {site: {"connected": True, "jid": s.full_jid} for site, s in self.opened.items()}

    def stop(self, timeout: float) -> None:
        self.stopped = True


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.sites = tmp_path / "sites"
        self.sites.mkdir()
        write_plugin(tmp_path / "plugins", "recorder", RECORDER)
        self.runtime = Runtime(
            Config.model_validate(
                {
                    "var_dir": str(tmp_path / "var"),
                    "plugins": {"paths": [str(tmp_path / "plugins")]},
                    "sites": {"dir": str(self.sites)},
                }
            )
        )
        self.queue = RecordingQueue()
        self.clock = Clock()
        self.store = ConfirmStore.open(f"sqlite:///{tmp_path / 'confirm.sqlite'}", clock=lambda: 1000.0)
        self.managers: list[XmppManager] = []

    def site(self, name: str, text: str) -> None:
        (self.sites / f"{name}.toml").write_text(text)
        self.runtime.sites.reload(name)

    def manager(self) -> tuple[XmppManager, FakeConnections]:
        connections = FakeConnections()
        manager = XmppManager(
            self.runtime.config,
            self.runtime.sites,
            self.runtime.registry,
            self.queue,
            connections=connections,
            store=self.store,
            clock=self.clock,
        )
        self.managers.append(manager)
        return manager, connections


def xmpp_table(jid: str = "bot@a.example", **extra: Any) -> str:
    values = {"jid": jid, "password": "pw", **extra}
    return "[settings.xmpp]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path)
    yield setup
    for manager in setup.managers:
        manager.stop()
    setup.store.close()


def inbound(body: str, site: str = "a.example", sender: str = "carol@example.org") -> Inbound:
    return Inbound(site, sender, f"{sender}/phone", "bot@a.example", body, "m1", "chat")


def started(setup: Setup) -> tuple[XmppManager, FakeConnections]:
    setup.site("a.example", xmpp_table(send_timeout="3s"))
    manager, connections = setup.manager()
    manager.start()
    manager.reconcile()
    return manager, connections


def test_sites_with_valid_settings_connect_and_a_broken_one_is_named(setup: Setup) -> None:
    # Given a site with settings, one whose settings are wrong, and one without any
    setup.site("a.example", xmpp_table())
    setup.site("b.example", xmpp_table("bot@b.example", ping_interval="soon"))
    setup.site("c.example", '[settings.demo]\ngreeting = "hi"\n')
    manager, connections = setup.manager()

    # When the manager starts and first polls
    manager.start()
    manager.poll()

    # Then only the good one is connected; the broken one is reported with file and key
    assert connections.started and set(connections.opened) == {"a.example"}
    status = json.loads(manager.status_path.read_text())
    assert set(status["sites"]) == {"a.example"}
    problem = status["problems"]["b.example"]
    assert f"{setup.sites / 'b.example.toml'}: settings.xmpp.ping_interval:" in problem
    with pytest.raises(XmppError, match="ping_interval"):
        manager.settings("b.example")
    with pytest.raises(XmppError, match=r"no \[settings.xmpp\] in .*c\.example\.toml"):
        manager.settings("c.example")


def test_changed_settings_reconnect_and_removed_ones_disconnect(setup: Setup) -> None:
    manager, connections = started(setup)
    manager.reconcile()
    assert connections.opens == 1  # unchanged: left alone

    setup.site("a.example", xmpp_table(ping_interval="30s"))
    manager.reconcile()
    assert connections.opens == 2 and connections.opened["a.example"].ping_interval == 30

    setup.site("a.example", "enabled = true\n")
    manager.reconcile()
    assert connections.opened == {} and connections.closed == ["a.example"]


def test_a_site_added_meanwhile_connects_when_a_handler_needs_it(setup: Setup) -> None:
    manager, connections = started(setup)
    (setup.sites / "new.example.toml").write_text(xmpp_table("bot@new.example"))
    setup.runtime.sites.reload("new.example")

    manager.send("new.example", "carol@example.org", "hi")

    assert "new.example" in connections.opened
    assert connections.sent[-1][:3] == ("new.example", "carol@example.org", "hi")


def test_handlers_on_pool_threads_open_a_new_sites_link_once(setup: Setup) -> None:
    # Given a started manager whose connections take a while to open a link (the XMPP thread's
    # round trip), and a site added since its last look
    manager, connections = started(setup)
    opening = threading.Event()
    plain_open = connections.open

    def slow_open(site: str, settings: XmppSettings) -> None:
        opening.set()
        time.sleep(0.05)
        plain_open(site, settings)

    connections.open = slow_open  # type: ignore[method-assign]
    (setup.sites / "new.example.toml").write_text(xmpp_table("bot@new.example"))
    setup.runtime.sites.reload("new.example")
    opens_before = connections.opens

    # When eight handlers on a worker's pool threads (concurrency 8) send from it at once
    def send(n: int) -> None:
        manager.send("new.example", "carol@example.org", f"hi {n}")

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then its link was opened once (a second open would have closed the first's session),
    # and every message went out
    assert opening.is_set()
    assert connections.opens - opens_before == 1
    assert sorted(body for site, _, body, _, _ in connections.sent if site == "new.example") == sorted(
        f"hi {n}" for n in range(8)
    )


def test_handlers_on_pool_threads_share_one_confirmation_store(tmp_path: Path) -> None:
    # Given a manager that opens its confirmation store on first use, and a slow first open
    setup = Setup(tmp_path)
    setup.site("a.example", xmpp_table())
    manager, _ = setup.manager()
    manager._store = None  # as a worker's manager starts: no store until a handler needs one
    manager._db_url = f"sqlite:///{tmp_path / 'lazy.sqlite'}"
    opened: list[ConfirmStore] = []
    plain_open = ConfirmStore.open

    def slow_open(db_url: str, **kw: Any) -> ConfirmStore:
        time.sleep(0.05)
        store = plain_open(db_url, **kw)
        opened.append(store)
        return store

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ConfirmStore, "open", staticmethod(slow_open))
            # When eight handler threads ask for it at once
            stores: list[ConfirmStore] = []
            threads = [threading.Thread(target=lambda: stores.append(manager.store())) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
        # Then one store was opened and every thread got it
        assert len(opened) == 1
        assert stores == [opened[0]] * 8
    finally:
        manager.stop()
        setup.store.close()


def test_plain_chat_becomes_an_xmppin_item(setup: Setup) -> None:
    manager, connections = started(setup)
    connections.inbox.put(inbound("hello there"))

    assert manager.busy() and manager.timeout() <= 0
    assert manager.poll() is True

    assert setup.queue.items == [
        (
            {
                "sender": "carol@example.org",
                "from": "carol@example.org/phone",
                "to": "bot@a.example",
                "body": "hello there",
                "id": "m1",
            },
            "xmppin",
            "a.example",
            DEFAULT_PRIORITY,  # none given: the default, as the backend puts it
        )
    ]
    assert not manager.busy()


def test_a_confirm_reply_is_answered_by_the_worker_not_queued(setup: Setup) -> None:
    manager, connections = started(setup)
    code = setup.store.issue("a.example", "carol@example.org", ttl=60)

    for body in ("confirm", "confirm WRONG234", f"confirm {code.lower()}", f"confirm {code}"):
        connections.inbox.put(inbound(body))
        manager.poll()

    answers = [text for _, to, text in connections.replies if to == "carol@example.org/phone"]
    assert answers[0] == USAGE
    assert answers[1].startswith("Error: wrong confirmation code")
    assert answers[2] == "Confirmed: carol@example.org is now your address on a.example."
    assert answers[3].startswith("Error: no confirmation is pending")
    assert setup.queue.items == []


def test_a_message_the_queue_refuses_is_kept_and_tried_again(setup: Setup) -> None:
    manager, connections = started(setup)
    setup.queue.fail = QueueError("database down")
    connections.inbox.put(inbound("keep me"))

    assert manager.poll() is False
    assert manager.busy() and manager.timeout() > 0  # waits before trying again

    setup.clock.now += RETRY_INBOX
    assert manager.poll() is True
    assert [payload["body"] for payload, *_ in setup.queue.items] == ["keep me"]


def test_chat_between_our_own_sites_is_ignored(setup: Setup) -> None:
    manager, connections = started(setup)
    setup.site("b.example", xmpp_table("bot@b.example"))
    manager.reconcile()

    connections.inbox.put(inbound("echo: hi", sender="bot@b.example"))
    manager.poll()

    assert setup.queue.items == [] and not manager.busy()


def test_chat_is_ignored_when_no_plugin_handles_xmppin(setup: Setup) -> None:
    manager, connections = started(setup)
    setup.runtime.registry._by_transport.pop("xmppin")
    connections.inbox.put(inbound("anyone?"))

    manager.poll()

    assert setup.queue.items == [] and not manager.busy()


def test_handlers_send_through_the_manager_of_their_process(setup: Setup) -> None:
    manager, connections = started(setup)
    item = QueueItem(id="1", site="a.example", transport="xmppout", payload={"to": "Carol@Example.org", "body": "hi"})

    assert owner.require() is manager
    assert XmppOutHandler().handle(item) is True
    assert connections.sent == [("a.example", "carol@example.org", "hi", "chat", 3.0)]

    connections.down = "site a.example: not connected"
    with pytest.raises(XmppUnavailable, match="not connected"):
        XmppOutHandler().handle(item)
    with pytest.raises(DataError, match="not a JID"):
        manager.send("a.example", "carol@@example.org", "hi")

    manager.stop()
    with pytest.raises(XmppError, match="no XMPP connection in this process"):
        XmppOutHandler().handle(item)


def test_a_confirmation_code_is_stored_then_sent(setup: Setup) -> None:
    _, connections = started(setup)
    item = QueueItem(id="1", site="a.example", transport="xmppconfirm", payload={"address": "carol@example.org/x"})

    XmppConfirmHandler().handle(item)

    [(site, to, text, _, _)] = connections.sent
    assert (site, to) == ("a.example", "carol@example.org")
    code = text.split('"confirm ')[1].split('"')[0]
    assert "within 1 day" in text
    status = setup.store.status("a.example", "carol@example.org")
    assert status is not None and status.pending
    assert setup.store.check("a.example", "carol@example.org", code, max_failures=5) is Verdict.CONFIRMED


def test_a_second_worker_stays_on_standby_until_the_owner_exits(setup: Setup) -> None:
    setup.site("a.example", xmpp_table())
    first, first_connections = setup.manager()
    second, second_connections = setup.manager()
    first.start()
    second.start()

    assert first_connections.started and not second_connections.started
    with pytest.raises(XmppUnavailable, match="standby"):
        second.settings("a.example")

    # When the owner exits, the standby takes over at its next look
    first.stop()
    setup.clock.now += RECONCILE_EVERY
    second.poll()
    assert second_connections.started and set(second_connections.opened) == {"a.example"}


def test_stopping_closes_the_connections_and_queues_what_was_received(setup: Setup) -> None:
    manager, connections = started(setup)
    connections.inbox.put(inbound("last words"))

    manager.stop()

    assert connections.stopped
    assert [payload["body"] for payload, *_ in setup.queue.items] == ["last words"]
    assert owner.active() is None
