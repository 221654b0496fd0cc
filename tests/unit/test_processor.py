"""statusq.processor: how one delivery becomes a handled item, and how it is settled."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config, SiteConfig
from statusq.defaults import XML_TYPE
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.middleware import Middleware, MiddlewareChain
from statusq.outcome import Outcome, Result
from statusq.processor import ItemProcessor
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable, current_site
from tests.unit.fakes import RecordingConsumer, make_delivery

POLICY = RetryPolicy(max_retries=2, delay=1.0, delay_max=10.0)  # 3 attempts


class Scripted(QueueHandler):
    """Does what the payload's "do" says, and records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[QueueItem, SiteConfig]] = []

    def handle(self, item: QueueItem) -> bool | None:
        self.seen.append((item, current_site()))
        action = item.payload.get("do", "ok") if isinstance(item.payload, dict) else "ok"
        if action == "raise":
            raise ValueError("boom")
        if action == "raise-bare":
            raise RuntimeError
        if action == "spin":
            safety_net = time.monotonic() + 10
            while time.monotonic() < safety_net:
                pass
        return {"ok": True, "none": None, "false": False, "zero": 0}.get(action, True)  # type: ignore[return-value]


@pytest.fixture
def sites_dir(tmp_path: Path) -> Path:
    path = tmp_path / "sites"
    path.mkdir()
    (path / "example.org.toml").write_text('[settings.demo]\ngreeting = "hello"\n')
    (path / "broken.org.toml").write_text("enabled = \n")
    (path / "off.org.toml").write_text("enabled = false\n")
    return path


def site_table(sites_dir: Path, *, require_file: bool = False) -> SiteTable:
    return SiteTable(Config.model_validate({"sites": {"dir": str(sites_dir), "require_file": require_file}}))


@pytest.fixture
def registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.register("echo", Scripted, group="main", plugin="test")
    return registry


@pytest.fixture
def handler(registry: HandlerRegistry) -> Scripted:
    found = registry.handler("echo")
    assert isinstance(found, Scripted)
    return found


@pytest.fixture
def processor(registry: HandlerRegistry, sites_dir: Path) -> ItemProcessor:
    return ItemProcessor(registry, site_table(sites_dir), POLICY)


@pytest.fixture
def consumer() -> RecordingConsumer:
    return RecordingConsumer()


def process(processor: ItemProcessor, consumer: RecordingConsumer, delivery: Delivery) -> Result:
    result = processor.process(delivery, consumer)
    assert consumer.settled == 1, "every delivery is settled exactly once"
    return result


# --- done -------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["ok", "none", "zero"])
def test_true_or_none_acks(processor: ItemProcessor, consumer: RecordingConsumer, action: str) -> None:
    delivery = make_delivery({"do": action})

    result = process(processor, consumer, delivery)

    assert result.outcome is Outcome.DONE
    assert result.reason is None
    assert result.duration >= 0
    assert consumer.acked == [delivery]


def test_handler_sees_the_decoded_item_in_its_site(
    processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted
) -> None:
    # Given a delivery for a site that has a file
    delivery = make_delivery({"do": "ok", "text": "héllo"}, site="example.org", attempt=2, id="abc")

    # When it is processed
    process(processor, consumer, delivery)

    # Then the handler got the decoded payload, the delivery's fields and that site's config
    [(item, site)] = handler.seen
    assert item.payload == {"do": "ok", "text": "héllo"}
    assert (item.id, item.site, item.transport, item.attempt) == ("abc", "example.org", "echo", 2)
    assert (item.headers, item.priority, item.content_type) == ({"h": "v"}, 7, delivery.content_type)
    assert item.enqueued_at == datetime.fromtimestamp(delivery.enqueued_at, UTC)
    assert site.name == "example.org"
    assert site.settings == {"demo": {"greeting": "hello"}}
    with pytest.raises(LookupError):
        current_site()  # reset once the handler returned


def test_unknown_site_is_served_with_empty_settings(
    processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted
) -> None:
    process(processor, consumer, make_delivery(site="new.example"))

    [(_item, site)] = handler.seen
    assert (site.name, site.settings) == ("new.example", {})
    assert len(consumer.acked) == 1


def test_xml_payload_reaches_the_handler_as_an_element(
    processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted
) -> None:
    process(processor, consumer, make_delivery(body=b"<r><a>1</a></r>", content_type=XML_TYPE))

    assert handler.seen[0][0].payload.findtext("a") == "1"


# --- retry ------------------------------------------------------------------------------------


def test_false_retries_with_a_delay(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    delivery = make_delivery({"do": "false"})

    result = process(processor, consumer, delivery)

    assert result.outcome is Outcome.RETRY
    [(retried, delay, reason)] = consumer.retried
    assert retried is delivery
    assert reason == "handler returned False"
    assert 0.8 <= delay <= 1.0  # first retry: POLICY.delay, jittered
    assert result.delay == delay


def test_later_retries_back_off_longer(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    process(processor, consumer, make_delivery({"do": "false"}, attempt=2))

    assert 1.6 <= consumer.retried[0][1] <= 2.0


@pytest.mark.parametrize(("action", "reason"), [("raise", "ValueError: boom"), ("raise-bare", "RuntimeError")])
def test_exception_retries_with_the_error(
    processor: ItemProcessor, consumer: RecordingConsumer, action: str, reason: str
) -> None:
    result = process(processor, consumer, make_delivery({"do": action}))

    assert result.outcome is Outcome.RETRY
    assert consumer.retried[0][2] == reason


def test_time_limit_exceeded_retries(registry: HandlerRegistry, sites_dir: Path, consumer: RecordingConsumer) -> None:
    processor = ItemProcessor(registry, site_table(sites_dir), POLICY, item_time_limit=0.1)

    result = process(processor, consumer, make_delivery({"do": "spin"}))

    assert result.outcome is Outcome.RETRY
    assert result.reason == "ItemTimeLimitExceeded: handler ran past the time limit of 0.1s"


def test_a_broken_site_retries(processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted) -> None:
    result = process(processor, consumer, make_delivery(site="broken.org"))

    assert result.outcome is Outcome.RETRY
    assert "site 'broken.org' has a broken config" in consumer.retried[0][2]
    assert handler.seen == []


# --- dead -------------------------------------------------------------------------------------


def test_last_attempt_failing_is_dead(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    result = process(processor, consumer, make_delivery({"do": "raise"}, attempt=3))

    assert result.outcome is Outcome.DEAD
    assert consumer.dead[0][1] == "ValueError: boom (gave up after 3 attempts)"


def test_a_broken_site_on_the_last_attempt_is_dead(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    process(processor, consumer, make_delivery(site="broken.org", attempt=3))

    assert "broken config" in consumer.dead[0][1]
    assert "gave up after 3 attempts" in consumer.dead[0][1]


def test_attempt_past_the_limit_never_finished(
    processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted
) -> None:
    # Given a delivery whose previous (last allowed) attempt never reported back
    delivery = make_delivery(attempt=4, error="MemoryError")

    # When it comes round again
    process(processor, consumer, delivery)

    # Then it is dead without running the handler again, with the last error kept
    [(dead, reason)] = consumer.dead
    assert dead is delivery
    assert reason.startswith("gave up after 3 attempts, the last of which never finished")
    assert reason.endswith("; last error: MemoryError")
    assert handler.seen == []


def test_unknown_transport_is_dead(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    result = process(processor, consumer, make_delivery(transport="nope"))

    assert result.outcome is Outcome.DEAD
    assert consumer.dead[0][1] == "no handler registered for transport 'nope'"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"{not json", "application/json"), (b"\xff\xfe", "application/json"), (b"<r>", XML_TYPE)],
)
def test_undecodable_body_is_dead_at_once(
    processor: ItemProcessor, consumer: RecordingConsumer, handler: Scripted, body: bytes, content_type: str
) -> None:
    process(processor, consumer, make_delivery(body=body, content_type=content_type))

    assert consumer.dead[0][1].startswith(f"cannot decode {content_type} body:")
    assert handler.seen == []


def test_unknown_site_with_require_file_is_dead(
    registry: HandlerRegistry, sites_dir: Path, consumer: RecordingConsumer
) -> None:
    processor = ItemProcessor(registry, site_table(sites_dir, require_file=True), POLICY)

    result = process(processor, consumer, make_delivery(site="new.example"))

    assert result.outcome is Outcome.DEAD
    assert "unknown site 'new.example'" in consumer.dead[0][1]


def test_disabled_site_is_dead(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    process(processor, consumer, make_delivery(site="off.org"))

    assert "disabled" in consumer.dead[0][1]


def test_invalid_site_name_is_dead_lettered(processor: ItemProcessor, consumer: RecordingConsumer) -> None:
    process(processor, consumer, make_delivery(site="not a site!"))

    assert len(consumer.dead) == 1


# --- middleware ------------------------------------------------------------------------------------


class Recording(Middleware):
    def __init__(self, name: str, log: list[Any]) -> None:
        self.name, self.log = name, log

    def before_item(self, delivery: Delivery) -> None:
        self.log.append((self.name, "before", delivery.id))

    def after_item(self, delivery: Delivery, result: Result) -> None:
        self.log.append((self.name, "after", result.outcome))


class Failing(Middleware):
    def before_item(self, delivery: Delivery) -> None:
        raise RuntimeError("before hook broke")

    def after_item(self, delivery: Delivery, result: Result) -> None:
        raise RuntimeError("after hook broke")


def test_hooks_run_around_the_item_after_hooks_in_reverse(
    registry: HandlerRegistry, sites_dir: Path, consumer: RecordingConsumer
) -> None:
    log: list[Any] = []
    chain = MiddlewareChain([Recording("a", log), Recording("b", log)])
    processor = ItemProcessor(registry, site_table(sites_dir), POLICY, middleware=chain)

    process(processor, consumer, make_delivery(id="x"))

    assert log == [
        ("a", "before", "x"),
        ("b", "before", "x"),
        ("b", "after", Outcome.DONE),
        ("a", "after", Outcome.DONE),
    ]


@pytest.mark.parametrize(("action", "outcome"), [("ok", Outcome.DONE), ("false", Outcome.RETRY)])
def test_a_failing_hook_does_not_change_the_outcome(
    registry: HandlerRegistry, sites_dir: Path, consumer: RecordingConsumer, action: str, outcome: Outcome
) -> None:
    # Given a failing hook between two working ones
    log: list[Any] = []
    chain = MiddlewareChain([Recording("a", log), Failing(), Recording("b", log)])
    processor = ItemProcessor(registry, site_table(sites_dir), POLICY, middleware=chain)

    # When an item is processed
    result = process(processor, consumer, make_delivery({"do": action}))

    # Then the outcome is the handler's, and the other hooks still ran
    assert result.outcome is outcome
    assert [entry[:2] for entry in log] == [("a", "before"), ("b", "before"), ("b", "after"), ("a", "after")]


def test_a_failing_hook_given_directly_does_not_change_the_outcome(
    registry: HandlerRegistry, sites_dir: Path, consumer: RecordingConsumer
) -> None:
    processor = ItemProcessor(registry, site_table(sites_dir), POLICY, middleware=MiddlewareChain([Failing()]))

    result = process(processor, consumer, make_delivery())

    assert result.outcome is Outcome.DONE
