"""statusq.tracing: the trace context from enqueue to the handler's span, on the memory backend.

The spans go to the SDK's in-memory exporter through a provider the test owns (never the global
one, which the worker's set-up replaces once per process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from statusq.config import Config
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.middleware import MiddlewareChain
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, Subscription
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from statusq.tracing import setup
from statusq.tracing.middleware import PREVIOUS_SPAN, TracingMiddleware
from tests.unit.fakes import FakeClock

POLICY = RetryPolicy(max_retries=1, delay=5.0, delay_max=5.0)  # two attempts


class Traced(QueueHandler):
    """Records the span current while it runs; fails when the payload says so."""

    def __init__(self) -> None:
        self.current: list[trace.SpanContext] = []

    def handle(self, item: QueueItem) -> bool:
        self.current.append(trace.get_current_span().get_span_context())
        if item.payload.get("fail"):
            raise ValueError("remote server said no")
        return True


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.app_tracer = self.provider.get_tracer("the web application")
        self.chain = MiddlewareChain([TracingMiddleware("memory", tracer_provider=self.provider)])
        self.clock = FakeClock()
        config = Config.model_validate({"queue": {"subsystem": "memory"}, "sites": {"dir": str(tmp_path)}})
        self.queue = MemoryQueueManager(config, MemoryBroker(clock=self.clock, claim_timeout=600.0))
        self.queue.use_middleware(self.chain)
        self.consumer: Consumer = self.queue.subscribe(Subscription())
        registry = HandlerRegistry()
        registry.register("push", Traced, group="main", plugin="test")
        handler = registry.handler("push")
        assert isinstance(handler, Traced)
        self.handler = handler
        self.processor = ItemProcessor(registry, SiteTable(config), POLICY, middleware=self.chain)

    def run_next(self) -> Delivery:
        delivery = self.consumer.fetch()
        assert delivery is not None, "nothing ready"
        self.processor.process(delivery, self.consumer)
        return delivery

    def item_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.queue.close()


def test_the_handlers_span_is_a_child_of_the_span_around_enqueue(world: World) -> None:
    # Given a web request's span around the enqueue
    with world.app_tracer.start_as_current_span("POST /notice") as request:
        world.queue.enqueue({"to": "remote.example"}, "push", "example.org")
    # When a worker runs the item
    done = world.run_next()
    # Then the handler's span continues the request's trace, and is current inside the handler
    (span,) = world.item_spans()
    assert PREVIOUS_SPAN not in done.headers  # written only for an item that runs again
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
    assert world.handler.current == [span.context]
    assert span.name == "process push"
    assert span.attributes is not None
    assert span.attributes["statusq.site"] == "example.org"
    assert span.attributes["statusq.transport"] == "push"
    assert span.attributes["statusq.attempt"] == 1
    assert span.attributes["statusq.outcome"] == "done"
    assert span.attributes["statusq.backend"] == "memory"
    assert span.attributes["messaging.message.id"]


def test_an_item_with_no_trace_context_starts_a_new_trace(world: World) -> None:
    world.queue.enqueue({}, "push", "example.org")  # no span current: nothing to inject
    world.run_next()
    (span,) = world.item_spans()
    assert span.parent is None
    assert span.context.is_valid


def test_an_item_with_an_invalid_traceparent_starts_a_new_trace(world: World) -> None:
    # A foreign producer's header in uppercase hex: refused, as the W3C says, not half-read
    world.queue.enqueue({}, "push", "example.org", headers={"traceparent": f"00-{'AB' * 16}-{'CD' * 8}-01"})
    world.run_next()
    (span,) = world.item_spans()
    assert span.parent is None
    assert span.context.trace_id != int("AB" * 16, 16)


def test_a_producers_tracestate_and_sampling_decision_reach_the_worker(world: World) -> None:
    # Given an application span that is valid, not sampled, and carries a tracestate
    unsampled = SpanContext(0x1234, 0x5678, False, TraceFlags(0), TraceState([("vendor", "v1")]))
    with trace.use_span(NonRecordingSpan(unsampled)):
        world.queue.enqueue({}, "push", "example.org")
    # When a worker runs the item
    delivery = world.run_next()
    # Then its span follows the producer's decision (not sampled: nothing exported), in its
    # trace and with its tracestate
    assert delivery.headers["tracestate"] == "vendor=v1"
    assert world.item_spans() == []
    (current,) = world.handler.current
    assert current.trace_id == 0x1234 and not current.trace_flags.sampled
    assert dict(current.trace_state) == {"vendor": "v1"}


def test_a_sampled_producers_tracestate_is_the_handlers_spans(world: World) -> None:
    sampled = SpanContext(0x1234, 0x5678, False, TraceFlags(1), TraceState([("vendor", "v1")]))
    with trace.use_span(NonRecordingSpan(sampled)):
        world.queue.enqueue({}, "push", "example.org")
    world.run_next()
    (span,) = world.item_spans()
    assert span.parent is not None and span.parent.span_id == 0x5678 and span.parent.is_remote
    assert span.context.trace_id == 0x1234
    assert dict(span.context.trace_state) == {"vendor": "v1"}


def test_the_context_before_the_item_is_current_again_after_it(world: World) -> None:
    with world.app_tracer.start_as_current_span("the loop") as outer:
        world.queue.enqueue({}, "push", "example.org")
        world.run_next()
        assert trace.get_current_span() is outer
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_retry_links_to_the_attempt_before_and_a_dead_letter_says_why(world: World) -> None:
    # Given an item whose handler always fails, with two attempts allowed
    with world.app_tracer.start_as_current_span("POST /notice"):
        world.queue.enqueue({"fail": True}, "push", "example.org")
    # When both attempts run (the retry's delay passes on the broker's clock)
    world.run_next()
    world.clock.advance(POLICY.delay + 1)
    second = world.run_next()
    # Then the second attempt's span links to the first, and both are in the request's trace
    first_span, second_span = world.item_spans()
    assert second.attempt == 2
    assert [link.context.span_id for link in second_span.links] == [first_span.context.span_id]
    assert first_span.context.trace_id == second_span.context.trace_id
    assert first_span.attributes is not None and first_span.attributes["statusq.outcome"] == "retry"
    assert [e.name for e in first_span.events] == ["exception", "retry"]
    # And the last attempt's span records the dead letter and its reason, as an error
    assert second_span.status.status_code is StatusCode.ERROR
    dead = [e for e in second_span.events if e.name == "dead-lettered"]
    assert len(dead) == 1 and dead[0].attributes is not None
    assert "remote server said no" in str(dead[0].attributes["statusq.reason"])
    assert PREVIOUS_SPAN in second.headers


def test_items_in_hand_on_threads_each_get_their_own_parent(world: World) -> None:
    # Given two requests, each enqueueing one item
    parents = []
    for path in ("/a", "/b"):
        with world.app_tracer.start_as_current_span(path) as request:
            world.queue.enqueue({}, "push", "example.org")
        parents.append(request.get_span_context().span_id)
    deliveries = [world.consumer.fetch(), world.consumer.fetch()]
    # When each is processed on a thread of its own
    threads = [threading.Thread(target=world.processor.process, args=(d, world.consumer)) for d in deliveries]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Then each span's parent is its own request's span
    assert sorted(s.parent.span_id for s in world.item_spans() if s.parent) == sorted(parents)


def test_tracing_off_adds_no_middleware() -> None:
    assert setup.producer_middleware(Config()) == []
    assert setup.worker_middleware(Config()) == []


def test_a_config_asking_for_a_missing_exporter_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import machinery treat the module as absent.
    monkeypatch.setitem(__import__("sys").modules, "opentelemetry.exporter.otlp.proto.grpc", None)
    config = Config.model_validate({"tracing": {"enabled": True, "exporter": "otlp-grpc"}})
    with pytest.raises(Exception, match=r"pip install 'statusq\[otel\]'"):
        setup.check(config)
