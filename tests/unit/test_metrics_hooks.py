"""The worker's metrics: the processor's failure kinds, the item hook, enqueues, control commands.

A real processor, real prometheus-client series in a registry of the test's own, a real UDP
socket for statsd; only the consumer is an in-memory one.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from statusq.config import Config
from statusq.control import ControlActions, ControlManager
from statusq.dispatcher.simulate import CollectingQueueManager, Enqueued
from statusq.flow import FlowGate
from statusq.handler import QueueHandler
from statusq.item import Delivery, Message, QueueItem
from statusq.metrics.hooks import MetricsHooks
from statusq.metrics.labels import OTHER, SiteLabels
from statusq.metrics.model import ItemMetrics
from statusq.metrics.statsd import Statsd
from statusq.metrics.worker import MetricsManager
from statusq.middleware import MiddlewareChain
from statusq.outcome import Failure, Outcome
from statusq.processor import ItemProcessor
from statusq.produce import RATE_KEY_HEADER
from statusq.queues.base import QueueManager
from statusq.queues.db.flow import FlowStore
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import RecordingConsumer, make_delivery

POLICY = RetryPolicy(max_retries=2, delay=1.0, delay_max=10.0)  # 3 attempts


class Scripted(QueueHandler):
    def handle(self, item: QueueItem) -> bool | None:
        action = item.payload.get("do", "ok")
        if action == "raise":
            raise ValueError("boom")
        return action != "false"


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.fixture
def hooks(receiver: socket.socket) -> MetricsHooks:
    statsd = Statsd(f"127.0.0.1:{receiver.getsockname()[1]}", "sq")
    return MetricsHooks(ItemMetrics(), SiteLabels("auto", 1), {"echo"}, statsd)


@pytest.fixture
def processor(hooks: MetricsHooks, tmp_path: Path) -> ItemProcessor:
    registry = HandlerRegistry()
    registry.register("echo", Scripted, group="main", plugin="test")
    sites = SiteTable(Config.model_validate({"sites": {"dir": str(tmp_path / "sites")}}))
    sites.remove("gone.example")
    return ItemProcessor(registry, sites, POLICY, middleware=MiddlewareChain([hooks]))


def value(hooks: MetricsHooks, name: str, **labels: str) -> float:
    found = hooks.model.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def run(processor: ItemProcessor, *deliveries: Delivery) -> list[Any]:
    consumer = RecordingConsumer()
    return [processor.process(d, consumer) for d in deliveries]


def test_every_failure_has_its_kind(processor: ItemProcessor) -> None:
    results = run(
        processor,
        make_delivery({"do": "false"}),
        make_delivery({"do": "raise"}, attempt=3),
        make_delivery({}, transport="nobody"),
        make_delivery(body=b"{not json"),
        make_delivery({}, transport=""),
        make_delivery({}, site="gone.example"),
        make_delivery({}, attempt=4),
        make_delivery({"do": "ok"}),
    )
    assert [(r.outcome, r.kind) for r in results] == [
        (Outcome.RETRY, Failure.HANDLER_FALSE),
        (Outcome.DEAD, Failure.HANDLER_ERROR),
        (Outcome.DEAD, Failure.NO_HANDLER),
        (Outcome.DEAD, Failure.BAD_ITEM),
        (Outcome.DEAD, Failure.BAD_ITEM),
        (Outcome.DEAD, Failure.SITE_UNAVAILABLE),
        (Outcome.DEAD, Failure.INTERNAL),  # an earlier attempt never finished
        (Outcome.DONE, None),
    ]


def test_settled_items_are_counted_by_bounded_labels(processor: ItemProcessor, hooks: MetricsHooks) -> None:
    # Given max_sites 1: the first site gets a series, later ones are _other
    run(
        processor,
        make_delivery({"do": "ok"}, site="a.example"),
        make_delivery({"do": "ok"}, site="a.example"),
        make_delivery({"do": "false"}, site="b.example"),
        make_delivery({"do": "raise"}, site="c.example", attempt=3),
        make_delivery({}, site="a.example", transport="typo"),
    )
    # Held in memory until the worker's loop flushes them (a few times a second)
    assert hooks.dirty_since is not None
    assert value(hooks, "statusq_items_total", site="a.example", transport="echo", outcome="handled") == 0
    hooks.flush()

    assert hooks.dirty_since is None
    assert value(hooks, "statusq_items_total", site="a.example", transport="echo", outcome="handled") == 2
    assert value(hooks, "statusq_items_total", site=OTHER, transport="echo", outcome="retried") == 1
    assert value(hooks, "statusq_items_total", site=OTHER, transport="echo", outcome="dead_lettered") == 1
    assert value(hooks, "statusq_item_errors_total", site=OTHER, transport="echo", kind="handler_false") == 1
    assert value(hooks, "statusq_item_errors_total", site=OTHER, transport="echo", kind="handler_error") == 1
    # A transport no handler serves does not get a series of its own
    assert value(hooks, "statusq_items_total", site="a.example", transport="_unknown", outcome="dead_lettered") == 1
    assert value(hooks, "statusq_item_errors_total", site="a.example", transport="_unknown", kind="no_handler") == 1
    # The handler ran four times; the item without a handler has no handling time
    assert value(hooks, "statusq_handling_seconds_count", transport="echo") == 4
    assert value(hooks, "statusq_handling_seconds_count", transport="_unknown") == 0
    # a -> a -> b -> c -> a: three switches
    assert value(hooks, "statusq_site_switches_total") == 3
    assert value(hooks, "statusq_last_handled_timestamp_seconds") == pytest.approx(time.time(), abs=60)


def test_latency_is_measured_for_first_attempts_from_enqueue(processor: ItemProcessor, hooks: MetricsHooks) -> None:
    first = make_delivery({"do": "ok"})
    first.enqueued_at = time.time() - 30
    retry = make_delivery({"do": "ok"}, attempt=2)
    retry.enqueued_at = time.time() - 3600  # its backoff was on purpose

    run(processor, first, retry)
    hooks.flush()

    assert value(hooks, "statusq_latency_seconds_count", transport="echo") == 1
    assert 30 <= value(hooks, "statusq_latency_seconds_sum", transport="echo") < 3600


@pytest.mark.parametrize("bulk", [True, False], ids=["bucket-counts", "observe-fallback"])
def test_flushed_timings_equal_observing_each_one(bulk: bool) -> None:
    # Values below, on and above bucket bounds, and past the last finite one
    values = [0.0, 0.0005, 0.001, 0.0010001, 0.3, 0.25, 1.0, 299.0, 300.0, 301.0, 12345.6]
    direct, batched = ItemMetrics(), ItemMetrics()
    for v in values:
        direct.handling.labels("echo").observe(v)
    hooks = MetricsHooks(batched, SiteLabels("auto", 1), {"echo"})
    child: Any = batched.handling.labels("echo")
    if not bulk:  # a prometheus-client whose histogram internals differ: only observe() is known

        class Opaque:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def observe(self, value: float) -> None:
                self.inner.observe(value)

        child = Opaque(child)
    for v in values:
        hooks._observe(child, v)
    hooks.flush()

    def histogram(model: ItemMetrics) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in model.registry.collect()
            if metric.name == "statusq_handling_seconds"
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    assert histogram(batched) == pytest.approx(histogram(direct))
    assert histogram(batched)[("statusq_handling_seconds_count", "")] == len(values)


def test_the_manager_flushes_soon_after_a_count_and_at_stop(processor: ItemProcessor, hooks: MetricsHooks) -> None:
    manager = MetricsManager(hooks)
    assert manager.timeout() == float("inf")  # nothing held: never woken for it

    run(processor, make_delivery({"do": "ok"}))

    assert 0 < manager.timeout() <= 0.05
    manager.poll()
    assert manager.timeout() == float("inf")
    assert value(hooks, "statusq_items_total", site="example.org", transport="echo", outcome="handled") == 1
    run(processor, make_delivery({"do": "ok"}))
    manager.stop()
    assert value(hooks, "statusq_items_total", site="example.org", transport="echo", outcome="handled") == 2


def test_statsd_gets_one_datagram_per_item(processor: ItemProcessor, receiver: socket.socket) -> None:
    run(processor, make_delivery({"do": "false"}))

    lines = receiver.recv(65536).decode().splitlines()
    names = [line.split(":")[0] for line in lines]
    assert names == [
        "sq.items.retried",
        "sq.items.echo.retried",
        "sq.errors.handler_false",
        "sq.handling.echo",
        "sq.latency.echo",
    ]
    assert lines[0] == "sq.items.retried:1|c" and lines[3].endswith("|ms")


def test_enqueues_through_managers_with_the_chain_are_counted_once(hooks: MetricsHooks) -> None:
    class Kept(CollectingQueueManager):
        """A backend: the base class's enqueue (template), this class's put."""

        enqueue = QueueManager.enqueue

        def _put(self, message: Message) -> str:
            self.items.append(Enqueued(message.body, message.transport, message.site, message.headers, 0.0))
            return str(len(self.items))

    class Wrapping(Kept):
        def _put(self, message: Message) -> str:
            return super()._put(message)

    chain = MiddlewareChain([hooks])
    bare, one, two = Kept(clock=time.time), Kept(clock=time.time), Wrapping(clock=time.time)
    one.use_middleware(chain)
    two.use_middleware(chain)
    bare.enqueue({}, "echo", site="a.example")  # no chain: not counted
    one.enqueue({}, "echo", site="a.example")
    two.enqueue({}, "echo")

    assert value(hooks, "statusq_enqueued_total", site="a.example", transport="echo") == 1
    assert value(hooks, "statusq_enqueued_total", site=OTHER, transport="echo") == 1  # "default", past max_sites


def test_control_commands_are_counted_applied_or_refused(hooks: MetricsHooks, tmp_path: Path) -> None:
    reloads = []
    channel = {"destination": "/topic/control"}
    config = Config.model_validate({"sites": {"dir": str(tmp_path)}})
    broker = MemoryBroker()
    queue = MemoryQueueManager(config, broker)
    inbox = queue.control_channel()
    assert inbox is not None
    # Straight onto the broker: send_control would refuse the bad ones at the sender
    for headers, body in [
        (channel, b"reload"),
        (channel, b"reboot now"),
        ({"destination": "/topic/else"}, b"shutdown"),
        (channel, b"reload"),
    ]:
        broker.broadcast(headers, body)
    sites = SiteTable(config)
    actions = ControlActions(reload=lambda: reloads.append(1), restart=lambda: None, shutdown=lambda: None)
    manager = ControlManager(
        inbox, sites, actions, channel="/topic/control", secret=None, middleware=MiddlewareChain([hooks])
    )

    manager.poll()
    queue.close()

    assert len(reloads) == 2
    assert value(hooks, "statusq_control_commands_total", command="reload", result="applied") == 2
    assert value(hooks, "statusq_control_commands_total", command="unknown", result="refused") == 1
    assert value(hooks, "statusq_control_commands_total", command="shutdown", result="refused") == 1


def test_holds_by_a_rate_limit_are_counted_by_kind_not_by_key(hooks: MetricsHooks, tmp_path: Path) -> None:
    # Given a transport limited to 1/s overall and by key, and three items of one site at once
    config = Config.model_validate(
        {
            "var_dir": str(tmp_path),
            "sites": {"dir": str(tmp_path / "sites")},
            "transports": {"echo": {"rate_limit": "1/s", "key_rate_limit": "1/s"}},
        }
    )
    store = FlowStore.open(f"sqlite:///{tmp_path / 'flow.sqlite'}")
    registry = HandlerRegistry()
    registry.register("echo", Scripted, group="main", plugin="test")
    gate = FlowGate(config, lambda: store)
    processor = ItemProcessor(registry, SiteTable(config), POLICY, middleware=MiddlewareChain([hooks]), flow=gate)
    deliveries = [make_delivery({"do": "ok"}, site="a.example") for _ in range(3)]
    for keyed in deliveries[:2]:
        keyed.headers[RATE_KEY_HEADER] = "remote.example"
    results = run(processor, *deliveries)
    hooks.flush()
    gate.close()

    # Then one ran, one waits for its key, one for the transport; counted by kind only
    assert [r.outcome for r in results] == [Outcome.DONE, Outcome.HOLD, Outcome.HOLD]
    held = "statusq_flow_held_total"
    assert value(hooks, held, site="a.example", transport="echo", limit="key_rate") == 1
    assert value(hooks, held, site="a.example", transport="echo", limit="transport_rate") == 1
    assert value(hooks, "statusq_items_total", site="a.example", transport="echo", outcome="held") == 2
    text = generate_latest(hooks.model.registry).decode()
    assert "remote.example" not in text
