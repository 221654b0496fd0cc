"""statusq.xmpp's producer side and wiring: items it queues, handler registration, xmpp_managers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import statusq.xmpp
from statusq import codec
from statusq.config import Config
from statusq.errors import DataError, PluginError
from statusq.item import Message, QueueItem
from statusq.plugins import PluginApi, PluginContext
from statusq.queues.memory import MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.runtime import Runtime
from statusq.xmpp.api import ConfirmRequest, OutgoingMessage, XmppApi
from statusq.xmpp.errors import XmppError
from statusq.xmpp.handlers import XmppConfirmHandler, XmppOutHandler
from tests.unit.fakes import write_plugin


class RecordingQueue(MemoryQueueManager):
    """The in-memory backend, keeping what was enqueued, decoded; ``fail`` makes the next
    enqueue raise it (after the real checks: a bad item never reaches ``_put``)."""

    def __init__(self) -> None:
        super().__init__(Config.model_validate({"queue": {"subsystem": "memory"}}))
        self.items: list[tuple[Any, str, str, int]] = []
        self.fail: Exception | None = None

    def _put(self, message: Message) -> str:
        if self.fail is not None:
            failure, self.fail = self.fail, None
            raise failure
        payload = codec.decode(message.body, message.content_type)
        self.items.append((payload, message.transport, message.site, message.priority))
        return str(len(self.items))


def test_send_queues_an_xmppout_item() -> None:
    queue = RecordingQueue()

    item_id = statusq.xmpp.send(queue, "a.example", "alice@example.org", "hello", priority=7)

    assert item_id == "1"
    assert queue.items == [({"to": "alice@example.org", "body": "hello", "type": "chat"}, "xmppout", "a.example", 7)]


@pytest.mark.parametrize(
    ("to", "body", "kind", "reason"),
    [
        ("not a jid", "hi", "chat", "not a JID"),
        ("a@b@c", "hi", "chat", "not a JID"),
        ("", "hi", "chat", "not a JID"),
        ("alice@example.org", "", "chat", "non-empty text body"),
        ("alice@example.org", "x" * 100_001, "chat", "limited to 100000"),
        ("alice@example.org", "hi", "groupchat", "not one of chat, normal, headline"),
    ],
)
def test_a_message_that_cannot_travel_is_refused_at_once(to: str, body: str, kind: str, reason: str) -> None:
    queue = RecordingQueue()

    with pytest.raises(DataError, match=reason):
        statusq.xmpp.send(queue, "a.example", to, body, message_type=kind)
    assert queue.items == []


def test_request_confirmation_queues_an_xmppconfirm_item() -> None:
    queue = RecordingQueue()

    statusq.xmpp.request_confirmation(queue, "a.example", "alice@example.org/phone", user="42")
    statusq.xmpp.request_confirmation(queue, "a.example", "bob@example.org")

    assert [(payload, transport) for payload, transport, _, _ in queue.items] == [
        ({"address": "alice@example.org/phone", "user": "42"}, "xmppconfirm"),
        ({"address": "bob@example.org"}, "xmppconfirm"),
    ]
    with pytest.raises(DataError, match="not a JID"):
        statusq.xmpp.request_confirmation(queue, "a.example", "nobody at all")


@pytest.mark.parametrize(
    "payload", [None, "alice@example.org", {"to": "alice@example.org", "body": "hi", "html": "<b>hi</b>"}, {"to": 1}]
)
def test_the_handler_refuses_a_malformed_xmppout_payload(payload: Any) -> None:
    with pytest.raises(DataError):
        OutgoingMessage.from_payload(payload)


def test_payloads_read_back_what_was_queued() -> None:
    message = OutgoingMessage("alice@example.org", "hi", "normal")
    request = ConfirmRequest("alice@example.org", "42")

    assert OutgoingMessage.from_payload(message.payload()) == message
    assert ConfirmRequest.from_payload(request.payload()) == request
    with pytest.raises(DataError, match="address and user"):
        ConfirmRequest.from_payload({"address": "alice@example.org", "code": "X"})


def _runtime(tmp_path: Path, *plugins: tuple[str, str]) -> Runtime:
    (tmp_path / "plugins").mkdir(exist_ok=True)
    for name, source in plugins:
        write_plugin(tmp_path / "plugins", name, source)
    return Runtime(
        Config.model_validate(
            {
                "var_dir": str(tmp_path / "var"),
                "queue": {"db_url": f"sqlite:///{tmp_path / 'queue.sqlite'}"},
                "plugins": {"paths": [str(tmp_path / "plugins")]},
                "sites": {"dir": str(tmp_path / "sites")},
            }
        )
    )


USES_XMPP = """
    import statusq.xmpp

    def register(api):
        statusq.xmpp.register(api)
"""


def test_several_plugins_may_register_the_xmpp_transports(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path, ("one", USES_XMPP), ("two", USES_XMPP))

    registry = runtime.registry

    assert registry.transports({"xmpp"}) == {"xmppout", "xmppconfirm"}
    assert registry.groups() == {"xmpp"}


def test_a_clash_with_another_plugins_transport_is_still_refused(tmp_path: Path) -> None:
    clash = """
        from statusq import QueueHandler

        class Mine(QueueHandler):
            def handle(self, item):
                return True

        def register(api):
            api.register_handler("xmppout", Mine)
    """
    runtime = _runtime(tmp_path, ("a_mine", clash), ("b_xmpp", USES_XMPP))

    with pytest.raises(PluginError, match="'xmppout' registered twice"):
        _ = runtime.registry


def test_xmpp_managers_only_for_a_worker_of_the_xmpp_group(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from statusq.xmpp.manager import XmppManager

    runtime = _runtime(tmp_path, ("one", USES_XMPP))
    queue = RecordingQueue()

    parts = (runtime.config, runtime.sites, runtime.registry, queue)
    assert statusq.xmpp.xmpp_managers(*parts, {"main"}) == []
    [manager] = statusq.xmpp.xmpp_managers(*parts, {"xmpp", "main"})
    assert isinstance(manager, XmppManager)
    with caplog.at_level(logging.WARNING, logger="statusq.xmpp"):
        assert statusq.xmpp.xmpp_managers(*parts, None) == []
    assert "statusq daemon --group xmpp --workers 1" in caplog.text


def test_a_worker_serving_everything_without_xmpp_handlers_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        runtime = _runtime(tmp_path)
        assert statusq.xmpp.xmpp_managers(runtime.config, runtime.sites, runtime.registry, RecordingQueue(), None) == []
    assert caplog.text == ""


def test_handlers_outside_the_xmpp_worker_fail_with_the_fix_in_the_reason() -> None:
    for handler, payload in (
        (XmppOutHandler(), {"to": "alice@example.org", "body": "hi"}),
        (XmppConfirmHandler(), {"address": "alice@example.org"}),
    ):
        with pytest.raises(XmppError, match="statusq daemon --group xmpp --workers 1"):
            handler.handle(QueueItem(id="1", site="a.example", transport="xmppout", payload=payload))


def test_api_xmpp_is_one_shared_producer_on_the_plugins_registry(tmp_path: Path) -> None:
    runtime = _runtime(tmp_path)
    registry = HandlerRegistry()
    context = PluginContext(runtime.config, runtime.middleware, lambda: XmppApi(runtime.config, runtime.queue_manager))
    first = PluginApi("one", registry, runtime.config, context).xmpp
    second = PluginApi("two", registry, runtime.config, context).xmpp

    assert isinstance(first, XmppApi) and first is second
    try:
        first.send("a.example", "alice@example.org", "hi")
        first.request_confirmation("a.example", "alice@example.org", user="7")
        rows = {(row.site, row.transport): row.ready for row in first.queue_manager().backlog()}
        assert rows == {("a.example", "xmppout"): 1, ("a.example", "xmppconfirm"): 1}
        assert first.status("a.example", "alice@example.org") is None  # asked, not yet sent
    finally:
        first.close()
