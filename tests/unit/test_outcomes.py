"""Handler-chosen outcomes: ``raise statusq.Retry(delay=..., reason=...)`` and ``raise
statusq.Reject(reason)``, in the processor and in a whole worker loop on the memory backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.config import Config
from statusq.errors import StatusqError
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.metrics.hooks import MetricsHooks
from statusq.metrics.labels import SiteLabels
from statusq.metrics.model import ItemMetrics
from statusq.middleware import MiddlewareChain
from statusq.outcome import Failure, Outcome, Reject, Result, Retry
from statusq.processor import ItemProcessor
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from statusq.worker import build_worker
from tests.unit.fakes import FakeClock, RecordingConsumer, make_delivery, write_plugin
from tests.unit.test_memory_worker import Clockwork, MemoryRuntime, waiting

POLICY = RetryPolicy(max_retries=2, delay=1.0, delay_max=10.0)  # 3 attempts


class Chooser(QueueHandler):
    """Raises what the payload says."""

    def handle(self, item: QueueItem) -> bool | None:
        payload = item.payload
        if payload.get("reject") is not None:
            raise Reject(payload["reject"])
        if "retry" in payload:
            raise Retry(reason=payload.get("reason", ""), delay=payload["retry"])
        return True


@pytest.fixture
def processor() -> ItemProcessor:
    registry = HandlerRegistry()
    registry.register("echo", Chooser, group="main", plugin="test")
    return ItemProcessor(registry, SiteTable(Config()), POLICY)


def run(processor: ItemProcessor, payload: dict[str, Any], attempt: int = 1) -> tuple[Result, RecordingConsumer]:
    consumer = RecordingConsumer()
    result = processor.process(make_delivery(payload, attempt=attempt), consumer)
    assert consumer.settled == 1
    return result, consumer


def test_both_are_exported_and_are_not_statusq_errors() -> None:
    # An application's `except StatusqError` around statusq calls must not catch a handler's verdict
    assert statusq.Retry is Retry and statusq.Reject is Reject
    assert not issubclass(Retry, StatusqError) and not issubclass(Reject, StatusqError)


def test_retry_with_a_delay_is_retried_after_exactly_that_delay(processor: ItemProcessor) -> None:
    result, consumer = run(processor, {"retry": "30s", "reason": "remote busy"})

    assert (result.outcome, result.delay, result.reason, result.kind) == (
        Outcome.RETRY,
        30.0,
        "remote busy",
        Failure.HANDLER_RETRY,
    )
    [(_delivery, delay, reason)] = consumer.retried
    assert (delay, reason) == (30.0, "remote busy")


def test_retry_without_a_delay_uses_the_transports_backoff(processor: ItemProcessor) -> None:
    result, _ = run(processor, {"retry": None}, attempt=2)

    assert result.outcome is Outcome.RETRY
    assert 1.6 <= result.delay <= 2.0  # POLICY's second backoff, jittered
    assert result.reason == "the handler asked for a retry"


def test_retry_on_the_last_attempt_is_dead_lettered_by_the_usual_rule(processor: ItemProcessor) -> None:
    result, consumer = run(processor, {"retry": 5, "reason": "still busy"}, attempt=3)

    assert (result.outcome, result.kind) == (Outcome.DEAD, Failure.HANDLER_RETRY)
    assert consumer.dead[0][1] == "still busy (gave up after 3 attempts)"


def test_reject_is_dead_at_once_with_its_reason(processor: ItemProcessor) -> None:
    result, consumer = run(processor, {"reject": "no such account"}, attempt=1)

    assert (result.outcome, result.kind) == (Outcome.DEAD, Failure.HANDLER_REJECT)
    assert consumer.dead[0][1] == "rejected: no such account"
    assert consumer.retried == []


@pytest.mark.parametrize("delay", ["-5s", "soon", float("nan")])
def test_a_bad_retry_delay_is_the_handlers_error(processor: ItemProcessor, delay: Any) -> None:
    # Retry(delay=...) checks its delay when raised; a bad one is a bug in the handler, retried as such
    result, _ = run(processor, {"retry": delay})

    assert (result.outcome, result.kind) == (Outcome.RETRY, Failure.HANDLER_ERROR)
    assert result.reason is not None and result.reason.startswith("ValueError:")


def test_metrics_label_both_kinds_and_time_the_handler() -> None:
    hooks = MetricsHooks(ItemMetrics(), SiteLabels("all", 10), {"echo"})
    registry = HandlerRegistry()
    registry.register("echo", Chooser, group="main", plugin="test")
    processor = ItemProcessor(registry, SiteTable(Config()), POLICY, middleware=MiddlewareChain([hooks]))

    for payload in ({"retry": "1s"}, {"reject": "no"}):
        processor.process(make_delivery(payload), RecordingConsumer())
    hooks.flush()

    def sample(name: str, **labels: str) -> float | None:
        return hooks.model.registry.get_sample_value(name, labels)

    for kind in ("handler_retry", "handler_reject"):
        assert sample("statusq_item_errors_total", site="example.org", transport="echo", kind=kind) == 1
    assert sample("statusq_handling_seconds_count", transport="echo") == 2


# --- a whole worker loop on the memory backend, on a fake clock -----------------------------------

PLUGIN = """
    from statusq import QueueHandler, Reject, Retry

    class Chooser(QueueHandler):
        def __init__(self):
            self.seen = []  # (attempt, the test's fake time)
            self.clock = lambda: 0.0

        def handle(self, item):
            self.seen.append((item.attempt, self.clock()))
            p = item.payload
            if "reject" in p:
                raise Reject(p["reject"])
            if item.attempt <= p.get("retries", 0):
                raise Retry(delay=p.get("delay"), reason="busy")
            return True

    def register(api):
        api.register_handler("chooser", Chooser)
    """


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[tuple[MemoryRuntime, FakeClock, MemoryQueueManager]]:
    write_plugin(tmp_path / "plugins", "chooser", PLUGIN)
    config = Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {"subsystem": "memory", "max_retries": 2, "retry_delay": "10s", "poll_max": "20ms"},
            "plugins": {"paths": [str(tmp_path / "plugins")]},
            "sites": {"dir": str(tmp_path / "sites")},
            "metrics": {"enabled": False},
        }
    )
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    producer = MemoryQueueManager(config, broker)
    with producer:
        yield MemoryRuntime(config, broker), clock, producer


def run_until_idle(runtime: MemoryRuntime, clock: FakeClock, producer: MemoryQueueManager) -> Clockwork:
    clockwork = Clockwork(clock, runtime.broker)
    master = build_worker(runtime, extra_managers=[clockwork]).master
    master.clock = clock
    clockwork.on_turn = lambda: None if waiting(producer) else master.request_stop()
    assert master.run() == 0
    return clockwork


def test_worker_retry_waits_its_delay_on_the_broker(loop: tuple[MemoryRuntime, FakeClock, MemoryQueueManager]) -> None:
    # Given an item whose handler asks for one retry in 100 s (the backoff would be 8-10 s)
    runtime, clock, producer = loop
    producer.enqueue({"retries": 1, "delay": "100s"}, "chooser")
    handler: Any = runtime.registry.handler("chooser")
    handler.clock = clock

    # When a worker runs until nothing waits
    run_until_idle(runtime, clock, producer)

    # Then the second attempt came only once the broker made it available 100 s after the first
    [(attempt_1, first), (attempt_2, second)] = handler.seen
    assert (attempt_1, attempt_2) == (1, 2)
    assert second - first >= 100.0
    assert producer.dead_letters() == [] and producer.broker.acked == 1
    assert producer.backlog() == []


def test_worker_retry_exhausting_attempts_is_dead_lettered(
    loop: tuple[MemoryRuntime, FakeClock, MemoryQueueManager],
) -> None:
    runtime, clock, producer = loop
    item_id = producer.enqueue({"retries": 99, "delay": "1s"}, "chooser")

    run_until_idle(runtime, clock, producer)

    [letter] = producer.dead_letters()
    assert (letter.id, letter.attempts, letter.error) == (item_id, 3, "busy (gave up after 3 attempts)")


def test_worker_reject_is_dead_after_one_attempt(loop: tuple[MemoryRuntime, FakeClock, MemoryQueueManager]) -> None:
    runtime, clock, producer = loop
    item_id = producer.enqueue({"reject": "malformed address"}, "chooser")

    run_until_idle(runtime, clock, producer)

    [letter] = producer.dead_letters()
    assert (letter.id, letter.attempts, letter.error) == (item_id, 1, "rejected: malformed address")
    handler: Any = runtime.registry.handler("chooser")
    assert [attempt for attempt, _ in handler.seen] == [1]
