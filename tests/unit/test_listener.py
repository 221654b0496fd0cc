"""statusq.io.listener: one item per poll, backing off when idle, surviving a failing backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.config import Config
from statusq.defaults import POLL_MIN
from statusq.errors import QueueError
from statusq.handler import QueueHandler
from statusq.io.listener import QueueListener
from statusq.item import Delivery, QueueItem
from statusq.processor import ItemProcessor
from statusq.queues.base import Subscription
from statusq.queues.memory import MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import RecordingConsumer, make_delivery

POLL_MAX = 0.2


class Echo(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        return True


class FailingConsumer(RecordingConsumer):
    def fetch(self) -> Delivery | None:
        raise QueueError("database is locked")


@pytest.fixture
def queue() -> Iterator[MemoryQueueManager]:
    with MemoryQueueManager(Config()) as manager:
        yield manager


@pytest.fixture
def processor(tmp_path: Path) -> ItemProcessor:
    registry = HandlerRegistry()
    registry.register("echo", Echo, group="main", plugin="test")
    sites = SiteTable(Config.model_validate({"sites": {"dir": str(tmp_path / "sites")}}))
    return ItemProcessor(registry, sites, RetryPolicy(2, 1.0, 10.0))


def test_one_item_per_poll(processor: ItemProcessor) -> None:
    consumer = RecordingConsumer([make_delivery(id="a"), make_delivery(id="b")])
    listener = QueueListener(consumer, processor, POLL_MAX)

    assert listener.poll() is True
    assert [d.id for d in consumer.acked] == ["a"]
    assert listener.timeout() <= 0  # more may be waiting: poll again at once

    assert listener.poll() is True
    assert [d.id for d in consumer.acked] == ["a", "b"]


def test_idle_polls_back_off_doubling_to_the_cap(processor: ItemProcessor) -> None:
    listener = QueueListener(RecordingConsumer(), processor, POLL_MAX)

    intervals = []
    for _ in range(10):
        intervals.append(listener._interval)
        assert listener.poll() is False
        assert 0 < listener.timeout() <= POLL_MAX

    assert intervals[:3] == [POLL_MIN, POLL_MIN * 2, POLL_MIN * 4]
    assert max(intervals) == POLL_MAX
    assert intervals == sorted(intervals)


def test_an_item_resets_the_backoff(processor: ItemProcessor, queue: MemoryQueueManager) -> None:
    listener = QueueListener(queue.subscribe(Subscription()), processor, POLL_MAX)
    for _ in range(5):
        listener.poll()

    queue.enqueue({}, "echo")
    listener.poll()

    assert listener._interval == POLL_MIN
    assert listener.timeout() <= 0


def test_a_failing_backend_backs_off_to_the_cap_and_survives(processor: ItemProcessor) -> None:
    listener = QueueListener(FailingConsumer(), processor, POLL_MAX)

    assert listener.poll() is False

    assert listener._interval == POLL_MAX
    assert 0 < listener.timeout() <= POLL_MAX


def test_filenos_and_stop_go_to_the_consumer(processor: ItemProcessor, queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    listener = QueueListener(consumer, processor, POLL_MAX)

    assert listener.filenos() == consumer.filenos() != []
    listener.stop()

    assert consumer.filenos() == []  # closed: its wake-up pipe is gone


def test_a_burst_of_items_stops_when_a_control_message_waits(
    processor: ItemProcessor, queue: MemoryQueueManager
) -> None:
    # Given a listener with items due and the worker's control channel
    channel = queue.control_channel()
    assert channel is not None
    consumer = RecordingConsumer([make_delivery(id="a"), make_delivery(id="b")])
    listener = QueueListener(consumer, processor, POLL_MAX, control=channel)
    assert listener.poll() is True and listener.more()

    # When a command arrives during an item, Then the burst ends: the control manager goes next
    queue.send_control("reload")
    assert listener.poll() is True
    assert not listener.more()
    channel.take()
    assert listener.more()
    channel.close()


def test_a_redelivered_item_is_counted_not_run(processor: ItemProcessor) -> None:
    # Given a delivery the broker flags redelivered (its worker died holding it)
    redelivered = make_delivery(id="r", attempt=1)
    redelivered.redelivered = True
    consumer = RecordingConsumer([redelivered])
    listener = QueueListener(consumer, processor, POLL_MAX)

    # When the listener polls it
    assert listener.poll() is True, "counting is work: --idle-exit must not see idleness"

    # Then it is retried at once with the reason, not handed to the handler
    assert consumer.acked == [] and consumer.dead == []
    [(delivery, delay, error)] = consumer.retried
    assert delivery.id == "r" and delay == 0.0 and "redelivered by the broker" in error
    assert listener.timeout() <= 0


def test_a_redelivered_item_keeps_its_previous_error(processor: ItemProcessor) -> None:
    redelivered = make_delivery(id="r", attempt=2, error="ValueError: boom")
    redelivered.redelivered = True
    consumer = RecordingConsumer([redelivered])
    QueueListener(consumer, processor, POLL_MAX).poll()
    assert consumer.retried[0][2] == "ValueError: boom"


class Unreachable(RecordingConsumer):
    """A broker consumer whose connection is down: fetch finds nothing, and says nothing."""

    up = False

    def reachable(self) -> bool:
        return self.up


def test_a_backend_out_of_reach_is_not_idle(processor: ItemProcessor) -> None:
    # Given a listener whose backend fails, then one whose broker connection is down
    failing = QueueListener(FailingConsumer([]), processor, POLL_MAX)
    down = Unreachable([])
    unreachable = QueueListener(down, processor, POLL_MAX)

    # When each polls and finds nothing
    failing.poll()
    unreachable.poll()

    # Then --idle-exit would wait for both: the work may be waiting where they cannot look
    assert failing.busy() and unreachable.busy()

    # And once the broker answers, an empty queue is idle again
    down.up = True
    unreachable.poll()
    assert not unreachable.busy()
