"""Cancel and purge (statusq.queues.cancels) on the memory backend: what is queued is deleted,
what is in hand is remembered and dropped unrun when it comes back; and the SQL store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from statusq import InvalidArgument, Outcome
from statusq.config import Config
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, Subscription
from statusq.queues.cancels import CancelView, Purge
from statusq.queues.db.cancels import SqlCancels
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import FakeClock


class Recording(QueueHandler):
    def __init__(self) -> None:
        self.runs: list[str] = []
        self.during: Callable[[QueueItem], None] = lambda item: None

    def handle(self, item: QueueItem) -> bool:
        self.runs.append(item.id)
        self.during(item)
        return not item.payload.get("fail")


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = FakeClock()
        config = Config.model_validate({"queue": {"subsystem": "memory"}, "sites": {"dir": str(tmp_path)}})
        self.queue = MemoryQueueManager(config, MemoryBroker(clock=self.clock))
        registry = HandlerRegistry()
        registry.register("push", Recording, group="main", plugin="test")
        handler = registry.handler("push")
        assert isinstance(handler, Recording)
        self.handler = handler
        view = CancelView(self.queue.cancel_store, refresh=0.0)  # read at every item
        self.processor = ItemProcessor(registry, SiteTable(config), RetryPolicy(2, 1.0, 1.0), cancels=lambda: view)
        self.consumer: Consumer = self.queue.subscribe(Subscription())

    def run_all(self) -> None:
        while (delivery := self.consumer.fetch()) is not None:
            self.processor.process(delivery, self.consumer)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.queue.close()


def test_a_queued_item_is_deleted_and_an_unknown_id_is_reported_as_neither(world: World) -> None:
    keep = world.queue.enqueue({}, "push")
    drop = world.queue.enqueue({}, "push")
    done = world.queue.cancel([drop, "no-such-id"])
    assert (done.removed, done.remembered) == ([drop], [])
    world.run_all()
    assert world.handler.runs == [keep]


def test_an_item_fetched_before_the_cancel_is_dropped_unrun(world: World) -> None:
    item = world.queue.enqueue({}, "push")
    delivery = world.consumer.fetch()  # prefetched, not started
    assert delivery is not None
    done = world.queue.cancel([item], "sent twice")
    assert (done.removed, done.remembered) == ([], [item])
    result = world.processor.process(delivery, world.consumer)
    assert world.handler.runs == []
    assert not world.queue.broker.items and not world.queue.broker.dead
    # dropped, not done: acked, but never counted as handled
    assert result.outcome is Outcome.DROPPED and result.reason == "cancelled: sent twice"


def test_a_running_item_cannot_be_stopped_but_its_retry_is_dropped(world: World) -> None:
    item = world.queue.enqueue({"fail": True}, "push")
    # Given the item is cancelled while its handler runs (and then fails)
    world.handler.during = lambda running: world.queue.cancel([running.id], "sent twice")
    world.run_all()
    world.handler.during = lambda running: None
    # When its retry comes
    world.clock.advance(60)
    world.run_all()
    # Then it was run once, and the retry acked unrun
    assert world.handler.runs == [item]
    assert not world.queue.broker.items and not world.queue.broker.dead


def test_a_purge_deletes_a_sites_queue_and_drops_what_is_in_hand_but_not_what_comes_after(world: World) -> None:
    world.queue.enqueue({"fail": True}, "push", "a.example")
    in_hand = world.consumer.fetch()
    assert in_hand is not None
    world.queue.enqueue({}, "push", "a.example")
    other = world.queue.enqueue({}, "push", "b.example")
    world.clock.advance(1)
    purged = world.queue.purge(site="a.example", reason="site removed")
    assert purged.removed == 1 and purged.remembered
    world.clock.advance(1)
    after = world.queue.enqueue({}, "push", "a.example")
    world.processor.process(in_hand, world.consumer)  # fetched before the purge: dropped unrun
    world.run_all()
    assert sorted(world.handler.runs) == sorted([other, after])


def test_bad_arguments_are_refused(world: World) -> None:
    with pytest.raises(InvalidArgument, match="no id"):
        world.queue.cancel([])
    with pytest.raises(InvalidArgument, match="a purge of everything is refused"):
        world.queue.purge()


def test_the_sql_store_remembers_ids_and_purges_for_a_week(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SqlCancels(f"sqlite:///{tmp_path / 'c.sqlite'}", clock=clock)
    store.remember(["1", "2", "1"], "twice")
    store.remember_purge(Purge("a.example", None, clock(), "gone"))
    ids, purges = store.load()
    assert ids == {"1": "twice", "2": "twice"}
    assert purges == [Purge("a.example", None, clock(), "gone")]
    clock.advance(8 * 86400)
    store.remember(["3"], "later")  # writers forget what is older than a week
    assert store.load() == ({"3": "later"}, [])
    store.close()
