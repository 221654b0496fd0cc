"""Unique keys (statusq.queues.keys): the stores' contract on a fake clock (memory, SQLite, and
PostgreSQL when it is there), enqueue with keys on the memory and inline backends, and the
worker's side: a duplicate delivery of a keyed item that succeeded is acked, not run."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq import InvalidArgument, Item, Outcome
from statusq.config import Config
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.processor import ItemProcessor
from statusq.queues.base import Subscription
from statusq.queues.db.keys import SqlKeys
from statusq.queues.keys import KEY_HEADER, PENDING_MAX, RESERVE_TTL, MemoryKeys, Taken, UniqueKeys
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.runtime import Runtime
from statusq.sites import SiteTable
from tests.unit.fakes import FakeClock, RecordingConsumer, handler_plugin, write_plugin


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[UniqueKeys, FakeClock]]:
    clock = FakeClock()
    keys: UniqueKeys
    if request.param == "memory":
        keys = MemoryKeys(clock)
    elif request.param == "sqlite":
        keys = SqlKeys(f"sqlite:///{tmp_path / 'keys.sqlite'}", clock=clock)
    else:
        keys = SqlKeys(request.getfixturevalue("pg_url"), clock=clock)
    yield keys, clock
    keys.close()


def fresh() -> str:
    return f"k-{uuid.uuid4().hex}"  # a key of this test's own, whatever else the database holds


def test_a_key_is_taken_until_its_item_succeeds_then_free(store: tuple[UniqueKeys, FakeClock]) -> None:
    keys, clock = store
    key = fresh()
    assert keys.reserve(key, 0.0) is None
    assert keys.reserve(key, 0.0) == Taken(""), "reserved, its id not known yet"
    keys.bind(key, "7", clock())
    assert keys.reserve(key, 0.0) == Taken("7")
    assert not keys.is_done(key, "7")
    keys.finish(key, "7")
    assert keys.is_done(key, "7"), "a duplicate delivery would be known"
    assert keys.reserve(key, 0.0) is None, "unique_for 0: free as soon as it succeeded"
    assert not keys.is_done(key, "7"), "the key is the new item's now"


def test_unique_for_keeps_the_key_after_success(store: tuple[UniqueKeys, FakeClock]) -> None:
    keys, clock = store
    key = fresh()
    assert keys.reserve(key, 600.0) is None
    keys.bind(key, "8", clock())
    keys.finish(key, "8")
    clock.advance(599)
    assert keys.reserve(key, 600.0) == Taken("8")
    clock.advance(2)
    assert keys.reserve(key, 600.0) is None


def test_a_dead_item_frees_its_key_and_only_its_own(store: tuple[UniqueKeys, FakeClock]) -> None:
    keys, clock = store
    key = fresh()
    keys.reserve(key, 0.0)
    keys.bind(key, "9", clock())
    keys.release(key, "not-9")
    assert keys.reserve(key, 0.0) == Taken("9")
    keys.release(key, "9")
    assert keys.reserve(key, 0.0) is None


def test_a_producer_that_died_reserving_or_an_item_lost_does_not_hold_a_key_forever(
    store: tuple[UniqueKeys, FakeClock],
) -> None:
    keys, clock = store
    key = fresh()
    keys.reserve(key, 0.0)
    clock.advance(RESERVE_TTL + 1)
    assert keys.reserve(key, 0.0) is None, "a reservation never bound lapses"
    keys.bind(key, "10", clock() + 3600)  # due in an hour
    clock.advance(3600 + PENDING_MAX - 1)
    assert keys.reserve(key, 0.0) == Taken("10")
    clock.advance(2)
    assert keys.reserve(key, 0.0) is None


def test_of_producers_racing_for_a_key_exactly_one_gets_it(store: tuple[UniqueKeys, FakeClock]) -> None:
    keys, _ = store
    key = fresh()
    results: list[Taken | None] = []
    start = threading.Barrier(8)

    def race() -> None:
        start.wait(10)
        results.append(keys.reserve(key, 0.0))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(None) == 1 and len(results) == 8


# --- enqueue with keys ------------------------------------------------------------------------


@pytest.fixture
def queue() -> Iterator[MemoryQueueManager]:
    config = Config.model_validate({"queue": {"subsystem": "memory"}})
    with MemoryQueueManager(config, MemoryBroker(clock=FakeClock())) as manager:
        yield manager


def test_an_enqueue_with_a_live_key_adds_nothing_and_returns_the_items_id(queue: MemoryQueueManager) -> None:
    first = queue.enqueue({"n": 1}, "push", "a.example", key="cron:a.example")
    again = queue.enqueue({"n": 2}, "push", "a.example", key="cron:a.example")
    other = queue.enqueue({"n": 3}, "push", "a.example", key="cron:b.example")
    assert again == first and other != first
    assert len(queue.broker.items) == 2


def test_a_batch_puts_each_live_key_once(queue: MemoryQueueManager) -> None:
    held = queue.enqueue({}, "push", key="held")
    ids = queue.enqueue_many(
        [
            Item({"n": 1}, "push", key="new"),
            Item({"n": 2}, "push", key="held"),
            Item({"n": 3}, "push"),
            Item({"n": 4}, "push", key="new"),
        ]
    )
    assert ids[1] == held and ids[0] == ids[3] and len(set(ids)) == 3
    assert len(queue.broker.items) == 3  # held, new, and the unkeyed one


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"key": "x" * 201}, "key"),
        ({"key": "é" * 101}, "key"),  # 202 bytes in UTF-8
        ({"key": ""}, "key"),
        ({"key": "a\nb"}, "key"),
        ({"unique_for": "10m"}, "unique_for"),
        ({"key": "k", "unique_for": -1}, "unique_for"),
        ({"key": "k", "unique_for": "soon"}, "unique_for"),
        ({"rate_key": ""}, "rate_key"),
        ({"rate_key": "x" * 201}, "rate_key"),
        ({"rate_key": "a\rb"}, "rate_key"),
    ],
)
def test_bad_keys_are_refused_and_enqueue_nothing(queue: MemoryQueueManager, kwargs: dict, argument: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        queue.enqueue({}, "push", **kwargs)
    assert raised.value.argument == argument
    assert not queue.broker.items


def test_a_key_of_200_bytes_is_taken(queue: MemoryQueueManager) -> None:
    queue.enqueue({}, "push", key="x" * 200)
    assert len(queue.broker.items) == 1


# --- the worker's side ------------------------------------------------------------------------


class Counting(QueueHandler):
    def __init__(self) -> None:
        self.runs: list[str] = []

    def handle(self, item: QueueItem) -> bool:
        self.runs.append(item.id)
        return item.payload.get("ok", True)


def test_a_duplicate_delivery_of_a_keyed_item_that_succeeded_is_acked_not_run(
    queue: MemoryQueueManager, tmp_path: Path
) -> None:
    registry = HandlerRegistry()
    registry.register("push", Counting, group="main", plugin="test")
    handler = registry.handler("push")
    assert isinstance(handler, Counting)
    config = Config.model_validate({"sites": {"dir": str(tmp_path)}})
    processor = ItemProcessor(registry, SiteTable(config), RetryPolicy(0, 1.0, 1.0), keys=lambda: queue.unique_keys)
    item_id = queue.enqueue({}, "push", "a.example", key="once", unique_for="1h")
    consumer = queue.subscribe(Subscription())
    delivery = consumer.fetch()
    assert delivery is not None
    # Given the item ran and its success was recorded, but its ack never reached the backend
    processor.process(delivery, RecordingConsumer())
    # When it is delivered again (as after its worker died)
    duplicate = RecordingConsumer()
    result = processor.process(delivery, duplicate)
    # Then it is acked and not run (dropped, not counted as handled again), and the key still
    # points at it
    assert result.outcome is Outcome.DROPPED
    assert handler.runs == [item_id]
    assert [d.id for d in duplicate.acked] == [item_id]
    assert queue.enqueue({}, "push", "a.example", key="once") == item_id


def test_a_dead_lettered_keyed_item_frees_its_key(queue: MemoryQueueManager, tmp_path: Path) -> None:
    registry = HandlerRegistry()
    registry.register("push", Counting, group="main", plugin="test")
    config = Config.model_validate({"sites": {"dir": str(tmp_path)}})
    processor = ItemProcessor(registry, SiteTable(config), RetryPolicy(0, 1.0, 1.0), keys=lambda: queue.unique_keys)
    first = queue.enqueue({"ok": False}, "push", key="k", unique_for="1h")
    consumer = queue.subscribe(Subscription())
    delivery = consumer.fetch()
    assert delivery is not None and KEY_HEADER in delivery.headers
    processor.process(delivery, consumer)
    assert queue.broker.dead, "no retries: dead at once"
    assert queue.enqueue({}, "push", key="k") != first


def test_inline_runs_a_keyed_item_once(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "one", handler_plugin("push"))
    config = Config.model_validate(
        {"queue": {"subsystem": "inline"}, "plugins": {"paths": [str(tmp_path / "plugins")]}}
    )
    with Runtime(config).queue_manager() as qm:
        first = qm.enqueue({}, "push", key="daily", unique_for="1d")
        assert qm.enqueue({}, "push", key="daily") == first
        assert qm.handled == 1  # type: ignore[attr-defined]
        assert qm.enqueue({}, "push", key="other") != first
        assert qm.handled == 2  # type: ignore[attr-defined]
