"""The producer API on the memory backend, on a fake clock: delays, etas, batches, expiry.

The same contract is proven against SQLite, PostgreSQL, ActiveMQ and RabbitMQ in
tests/e2e/test_enqueueing.py; here each rule is checked in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from statusq import InvalidArgument, Item, Middleware, MiddlewareChain, StatusqError
from statusq.config import Config
from statusq.defaults import ETA_TOLERANCE, MAX_BATCH
from statusq.errors import DataError
from statusq.handler import QueueHandler
from statusq.item import Delivery, Message, QueueItem
from statusq.metrics.hooks import MetricsHooks
from statusq.metrics.labels import SiteLabels
from statusq.metrics.model import ItemMetrics
from statusq.outcome import Failure, Outcome
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, Subscription
from statusq.queues.inline import InlineQueueManager
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import FakeClock


class Echo(QueueHandler):
    """Records what it ran."""

    def __init__(self) -> None:
        self.ran: list[Any] = []

    def handle(self, item: QueueItem) -> bool | None:
        self.ran.append(item.payload)
        return True


class Fails(Echo):
    def handle(self, item: QueueItem) -> bool | None:
        super().handle(item)
        return False


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> Config:
    return Config.model_validate({"queue": {"subsystem": "memory", "max_retries": 1, "retry_delay": 30}})


@pytest.fixture
def qm(config: Config, clock: FakeClock) -> Iterator[MemoryQueueManager]:
    with MemoryQueueManager(config, MemoryBroker(clock=clock)) as manager:
        yield manager


@pytest.fixture
def consumer(qm: MemoryQueueManager) -> Consumer:
    return qm.subscribe(Subscription())


def at(clock: FakeClock, seconds: float) -> datetime:
    """An aware datetime ``seconds`` after the fake clock's now."""
    return datetime.fromtimestamp(clock.now + seconds, UTC)


def processor(config: Config, clock: FakeClock, handler: type[Echo] = Echo) -> ItemProcessor:
    registry = HandlerRegistry()
    registry.register("echo", handler, group="main", plugin="test")
    return ItemProcessor(registry, SiteTable(config), RetryPolicy.from_config(config.queue), clock=clock)


def ran(proc: ItemProcessor) -> list[Any]:
    handler = proc.registry.handler("echo")
    assert isinstance(handler, Echo)
    return handler.ran


# -- delays ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("delay", [90, 90.0, "90s", "1.5m", timedelta(seconds=90)])
def test_a_delayed_item_waits_on_the_clock_then_runs(qm, consumer, clock, delay) -> None:
    # Given an item delayed by 90 s (in any of the accepted spellings)
    item_id = qm.enqueue({"n": 1}, "echo", delay=delay)

    # Then no worker gets it before, it counts as delayed, and it comes once the time has come
    clock.advance(89.9)
    assert consumer.fetch() is None
    assert [(row.ready, row.delayed) for row in qm.backlog()] == [(0, 1)]
    clock.advance(0.1)
    delivery = consumer.fetch()
    assert delivery is not None and delivery.id == item_id and delivery.attempt == 1


def test_an_eta_is_a_delay_until_then(qm, consumer, clock) -> None:
    qm.enqueue("later", "echo", eta=at(clock, 600))
    now = qm.enqueue("now", "echo")
    first = consumer.fetch()
    assert first is not None and first.id == now, "the item without an eta runs first"
    consumer.ack(first)
    clock.advance(599)
    assert consumer.fetch() is None
    clock.advance(1)
    assert consumer.fetch() is not None


def test_an_eta_a_moment_ago_means_now(qm, consumer, clock) -> None:
    qm.enqueue("x", "echo", eta=at(clock, -ETA_TOLERANCE + 1))
    assert consumer.fetch() is not None


@pytest.mark.parametrize(
    ("options", "argument", "words"),
    [
        ({"delay": -1}, "delay", "not negative"),
        ({"delay": "soon"}, "delay", "not a duration"),
        ({"delay": "-5m"}, "delay", "not a duration"),
        ({"delay": float("inf")}, "delay", "finite"),
        ({"delay": True}, "delay", "a duration must be"),
        ({"eta": datetime(2030, 1, 1)}, "eta", "has no time zone"),
        ({"eta": "2030-01-01"}, "eta", "aware datetime"),
        ({"eta": "past"}, "eta", "in the past"),
        ({"delay": 5, "eta": "both"}, "eta", "not both"),
        ({"expires": 0}, "expires", "more than 0"),
        ({"expires": "1x"}, "expires", "not a duration"),
        ({"delay": 60, "expires": 60}, "expires", "could never run"),
        ({"expires": datetime(2030, 1, 1)}, "expires", "has no time zone"),
    ],
)
def test_bad_timing_arguments_name_the_argument_and_enqueue_nothing(qm, clock, options, argument, words) -> None:
    if options.get("eta") == "past":
        options = {"eta": at(clock, -ETA_TOLERANCE - 1)}
    with pytest.raises(InvalidArgument) as caught:
        qm.enqueue({}, "echo", **options)
    assert caught.value.argument == argument and words in str(caught.value)
    assert str(caught.value).startswith(f"{argument}: ")
    assert isinstance(caught.value, DataError) and caught.value.exit_code == 65
    assert qm.backlog() == []


def test_an_eta_in_the_past_says_how_far(qm, clock) -> None:
    with pytest.raises(InvalidArgument, match=r"eta: .* is 60s in the past"):
        qm.enqueue({}, "echo", eta=at(clock, -60))


def test_an_expiry_before_the_eta_is_refused(qm, clock) -> None:
    with pytest.raises(InvalidArgument, match="expires: is not after the item's delay or eta"):
        qm.enqueue({}, "echo", eta=at(clock, 120), expires=at(clock, 60))
    with pytest.raises(InvalidArgument, match="expires: is not after now"):
        qm.enqueue({}, "echo", expires=at(clock, -1))
    assert qm.backlog() == []


def test_the_old_checks_name_their_argument_too(qm) -> None:
    with pytest.raises(InvalidArgument, match=r"^transport: invalid transport"):
        qm.enqueue({}, "Not A Transport")
    with pytest.raises(InvalidArgument, match=r"^priority: invalid priority"):
        qm.enqueue({}, "echo", priority=12)
    with pytest.raises(InvalidArgument, match=r"^payload: "):
        qm.enqueue(object(), "echo")


# -- batches --------------------------------------------------------------------------------------


def test_a_batch_returns_its_ids_in_order_and_each_item_keeps_its_options(qm, consumer, clock) -> None:
    # Given a batch of three: plain, another site with a header and a priority, delayed
    ids = qm.enqueue_many(
        [
            Item({"n": 0}, "echo"),
            Item({"n": 1}, "echo", site="b.example", headers={"k": "v"}, priority=4),
            Item({"n": 2}, "echo", delay="1m"),
        ]
    )

    # Then three ids, in order, fetched in turns by site (b.example, then the default site, by
    # name: docs/flow-control.md), the delayed one once due
    assert len(ids) == 3 and len(set(ids)) == 3
    second, first = consumer.fetch(), consumer.fetch()
    assert first is not None and second is not None
    assert [first.id, second.id] == ids[:2]
    assert (second.site, second.headers) == ("b.example", {"k": "v"})
    assert consumer.fetch() is None
    clock.advance(60)
    third = consumer.fetch()
    assert third is not None and third.id == ids[2]


def test_a_batch_with_one_bad_item_enqueues_nothing_and_names_it(qm) -> None:
    items = [Item({"n": n}, "echo") for n in range(5)]
    items[3] = Item({"n": 3}, "echo", delay=-1)
    with pytest.raises(InvalidArgument) as caught:
        qm.enqueue_many(items)
    assert (caught.value.index, caught.value.argument) == (3, "delay")
    assert str(caught.value).startswith("items[3]: delay: ")
    assert qm.backlog() == []


@pytest.mark.parametrize(
    ("bad", "argument"),
    [
        (Item({}, "echo", site="bad site"), "site"),
        (Item({}, "Echo!"), "transport"),
        (Item({}, "echo", priority=12), "priority"),
        (Item({}, "echo", priority=True), "priority"),
        (Item({}, "echo", priority=4.0), "priority"),  # type: ignore[arg-type]
        (Item({}, ["echo"]), "transport"),  # type: ignore[arg-type] # unhashable: never remembered
        (Item({}, "echo", site=["a.example"]), "site"),  # type: ignore[arg-type]
    ],
)
def test_a_batch_checks_each_name_once_yet_still_names_the_bad_item(qm, bad, argument) -> None:
    # Given good items whose names were checked (and remembered), then a bad one, then a good one
    items = [Item({}, "echo", site="a.example", priority=3), Item({}, "echo"), bad, Item({}, "echo")]

    # Then the bad one is refused by its index, as it would be alone, and nothing is enqueued
    with pytest.raises(InvalidArgument) as caught:
        qm.enqueue_many(items)
    assert (caught.value.index, caught.value.argument) == (2, argument)
    with pytest.raises(InvalidArgument) as alone:
        qm.enqueue_many([bad])
    assert alone.value.reason == caught.value.reason
    assert qm.backlog() == []


def test_a_batch_gives_each_item_its_own_site_transport_and_priority(qm, consumer) -> None:
    # Given a batch that repeats and mixes sites, transports and priorities, with a transport default
    qm.default_priorities = {"other": 7}
    items = [
        Item({"n": 0}, "echo"),
        Item({"n": 1}, "other"),
        Item({"n": 2}, "echo", site="b.example"),
        Item({"n": 3}, "other", priority=2),
        Item({"n": 4}, "echo"),
        Item({"n": 5}, "other"),
    ]
    qm.enqueue_many(items)

    # Then each arrives with its own, the transport's default where it gave none
    got = {}
    while (delivery := consumer.fetch()) is not None:
        got[delivery.body] = (delivery.site, delivery.transport, delivery.priority)
    default = qm.default_site
    assert got == {
        b'{"n":0}': (default, "echo", 4),
        b'{"n":1}': (default, "other", 7),
        b'{"n":2}': ("b.example", "echo", 4),
        b'{"n":3}': (default, "other", 2),
        b'{"n":4}': (default, "echo", 4),
        b'{"n":5}': (default, "other", 7),
    }


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([], "a batch of none"),
        ((), "a batch of none"),
        (iter([]), "a batch of none"),
        (Item({}, "echo"), "must be a list of statusq.Item"),
        ("echo", "must be a list of statusq.Item"),
        ([Item({}, "echo"), {"payload": 1, "transport": "echo"}], "items[1]: items: must be a statusq.Item, not dict"),
        ([Item({}, "echo")] * (MAX_BATCH + 1), f"a batch holds at most {MAX_BATCH:,}"),
    ],
)
def test_bad_batches_are_refused(qm, items, words) -> None:
    with pytest.raises(InvalidArgument) as caught:
        qm.enqueue_many(items)
    assert words in str(caught.value)
    assert qm.backlog() == []


def test_a_generator_of_items_is_a_batch(qm) -> None:
    assert len(qm.enqueue_many(Item(n, "echo") for n in range(4))) == 4


class Watch(Middleware):
    """Records the enqueue hooks; refuses the payload "refuse"."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def before_enqueue(self, message: Message) -> None:
        self.events.append(f"before {message.body.decode()}")
        if message.body == b'"refuse"':
            raise StatusqError("refused by policy")
        message.headers["seen"] = "yes"

    def after_enqueue(self, message: Message) -> None:
        self.events.append(f"after {message.body.decode()} {message.id}")


def test_middleware_sees_every_item_before_and_after_and_its_headers_travel(qm, consumer) -> None:
    watch = Watch()
    qm.use_middleware(MiddlewareChain([watch]))
    ids = qm.enqueue_many([Item("a", "echo"), Item("b", "echo")])
    assert watch.events == ['before "a"', 'before "b"', f'after "a" {ids[0]}', f'after "b" {ids[1]}']
    delivery = consumer.fetch()
    assert delivery is not None and delivery.headers == {"seen": "yes"}


def test_a_refusal_by_middleware_refuses_the_whole_batch(qm) -> None:
    watch = Watch()
    qm.use_middleware(MiddlewareChain([watch]))
    with pytest.raises(StatusqError, match="refused by policy"):
        qm.enqueue_many([Item("a", "echo"), Item("refuse", "echo"), Item("c", "echo")])
    assert qm.backlog() == []
    assert not any(event.startswith("after") for event in watch.events)


def test_a_consumer_never_sees_half_a_batch(qm, consumer) -> None:
    # The broker puts a batch under its lock: a fetch on another thread sees none or all of it.
    broker = qm.broker
    seen: list[int] = []
    original = broker.wake

    def count_on_wake() -> None:
        seen.append(len(broker.items))
        original()

    broker.wake = count_on_wake  # type: ignore[method-assign]
    qm.enqueue_many([Item(n, "echo") for n in range(10)])
    assert seen == [10]


# -- expiry ---------------------------------------------------------------------------------------


def test_an_item_not_started_before_it_expires_is_dead_lettered_as_expired(qm, consumer, clock, config) -> None:
    # Given an item that expires in 60 s, and one that never does
    proc = processor(config, clock)
    expiring = qm.enqueue("old news", "echo", expires=60)
    qm.enqueue("kept", "echo")

    # When a worker gets to them only after 61 s
    clock.advance(61)
    results = []
    while (delivery := consumer.fetch()) is not None:
        results.append(proc.process(delivery, consumer))

    # Then the expired one was not run but dead-lettered with the reason, the other ran
    assert ran(proc) == ["kept"]
    assert [(r.outcome, r.kind) for r in results] == [(Outcome.DEAD, Failure.EXPIRED), (Outcome.DONE, None)]
    [letter] = qm.dead_letters()
    assert letter.id == expiring and letter.error.startswith("expired: not started by ")
    assert letter.attempts == 1


def test_an_item_started_in_time_runs_and_an_expiry_as_a_datetime_works_too(qm, consumer, clock, config) -> None:
    proc = processor(config, clock)
    qm.enqueue("fresh", "echo", expires=at(clock, 60), delay=30)
    clock.advance(59)
    delivery = consumer.fetch()
    assert delivery is not None and delivery.expires_at == clock.now + 1
    assert proc.process(delivery, consumer).outcome is Outcome.DONE
    assert ran(proc) == ["fresh"]


def test_a_retry_that_falls_due_after_the_expiry_is_not_run_again(qm, consumer, clock, config) -> None:
    # Given an item expiring in 20 s whose first attempt fails (retry_delay 30 s)
    proc = processor(config, clock, Fails)
    qm.enqueue("x", "echo", expires=20)
    first = consumer.fetch()
    assert first is not None
    assert proc.process(first, consumer).outcome is Outcome.RETRY

    # When the retry comes due, after the expiry
    clock.advance(31)
    second = consumer.fetch()
    assert second is not None

    # Then it is dead-lettered as expired, not run a second time
    assert proc.process(second, consumer).kind is Failure.EXPIRED
    assert ran(proc) == ["x"]


def test_a_requeued_expired_item_runs(qm, consumer, clock, config) -> None:
    proc = processor(config, clock)
    item_id = qm.enqueue("late", "echo", expires=1)
    clock.advance(2)
    delivery = consumer.fetch()
    assert delivery is not None
    proc.process(delivery, consumer)
    assert qm.requeue_dead([item_id]) == 1
    again = consumer.fetch()
    assert again is not None and again.expires_at is None
    assert proc.process(again, consumer).outcome is Outcome.DONE


def test_expired_items_are_counted_by_their_kind(qm, consumer, clock, config) -> None:
    hooks = MetricsHooks(ItemMetrics(), SiteLabels("auto", 1), {"echo"})
    proc = processor(config, clock)
    proc.middleware = MiddlewareChain([hooks])
    qm.enqueue("x", "echo", site="a.example", expires=1)
    clock.advance(2)
    delivery = consumer.fetch()
    assert delivery is not None
    proc.process(delivery, consumer)
    hooks.flush()
    labels = {"site": "a.example", "transport": "echo", "kind": "expired"}
    assert hooks.model.registry.get_sample_value("statusq_item_errors_total", labels) == 1


def test_expiry_is_checked_before_anything_else(config, clock) -> None:
    # No site, no handler: still "expired", the first thing the processor looks at.
    delivery = Delivery("1", "nowhere", "nobody", b"{", "application/json", {}, 9, 0.0, expires_at=clock.now)
    result = processor(config, clock)._run(delivery)
    assert (result.outcome, result.kind) == (Outcome.DEAD, Failure.EXPIRED)


# -- inline ---------------------------------------------------------------------------------------


def test_inline_runs_at_once_ignoring_delays_but_checks_them(config, clock) -> None:
    proc = processor(config, clock)
    inline = InlineQueueManager(config, proc.process, MemoryBroker(clock=clock))
    inline.enqueue("delayed", "echo", delay="1h")
    inline.enqueue("eta", "echo", eta=at(clock, 3600), expires="2h")
    ids = inline.enqueue_many([Item(1, "echo"), Item(2, "echo", delay=5)])
    assert ran(proc) == ["delayed", "eta", 1, 2] and len(ids) == 2
    assert inline.handled == 4
    with pytest.raises(InvalidArgument, match="delay"):
        inline.enqueue("x", "echo", delay=-1)
    with pytest.raises(InvalidArgument, match="items"):
        inline.enqueue_many([])
    assert ran(proc) == ["delayed", "eta", 1, 2]


def test_a_body_over_max_body_is_refused_at_enqueue_and_dead_lettered_if_it_comes_anyway() -> None:
    from statusq.processor import ItemProcessor
    from statusq.queues.memory import MemoryBroker, MemoryQueueManager
    from statusq.registry import HandlerRegistry
    from statusq.retry import RetryPolicy
    from statusq.sites import SiteTable
    from tests.unit.fakes import RecordingConsumer, make_delivery

    config = Config.model_validate({"queue": {"subsystem": "memory", "max_body": "1KB"}})
    assert config.queue.max_body == 1024
    with MemoryQueueManager(config, MemoryBroker()) as qm:
        with pytest.raises(InvalidArgument, match=r"payload: 1,\d{3} bytes; \[queue\] max_body is 1,024"):
            qm.enqueue("x" * 1100, "push")
        with pytest.raises(InvalidArgument, match=r"items\[1\]: payload"):
            qm.enqueue_many([Item("small", "push"), Item("x" * 1100, "push")])
        assert not qm.broker.items
        qm.enqueue("x" * 1000, "push")  # 1,002 bytes of JSON: under the limit

    class Never(QueueHandler):
        def handle(self, item: object) -> bool:
            raise AssertionError("a body over the limit must not reach a handler")

    registry = HandlerRegistry()
    registry.register("echo", Never, group="main", plugin="test")
    processor = ItemProcessor(registry, SiteTable(Config()), RetryPolicy(3, 1.0, 1.0), max_body=1024)
    consumer = RecordingConsumer()
    processor.process(make_delivery(body=b'"' + b"x" * 2000 + b'"'), consumer)
    [(_delivery, reason)] = consumer.dead
    assert reason == "body of 2,002 bytes is over [queue] max_body (1,024): not decoded"
