"""statusq.io.listener: one item per poll, backing off when idle, surviving a failing backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.config import Config
from statusq.defaults import POLL_MIN
from statusq.errors import QueueError
from statusq.handler import QueueHandler
from statusq.io.concurrent import ConcurrentListener
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


class RefusingResends(RecordingConsumer):
    """A broker consumer whose writer holds re-sends a full broker refused."""

    def counts_in_place(self) -> bool:
        return True


def test_while_resends_are_refused_a_redelivered_item_is_counted_in_place_and_run(processor: ItemProcessor) -> None:
    # Given a redelivered delivery while the broker refuses re-sends (a recount's copy would be
    # held with its original unacked, and enough of them fill the prefetch window for good)
    redelivered = make_delivery(id="r", attempt=1, error="ValueError: boom")
    redelivered.redelivered = True
    consumer = RefusingResends([redelivered])

    # When the listener polls it
    assert QueueListener(consumer, processor, POLL_MAX).poll() is True

    # Then it ran at once as attempt 2 and was acked: no re-send
    assert consumer.retried == [] and consumer.dead == []
    [done] = consumer.acked
    assert (done.id, done.attempt, done.redelivered) == ("r", 2, False)


def test_with_concurrency_a_redelivered_item_is_counted_in_place_while_resends_are_refused(
    processor: ItemProcessor,
) -> None:
    # Given a worker with 4 items in hand, a normal redelivered delivery, then one that comes
    # while the broker refuses re-sends
    normal = make_delivery(id="n", attempt=1)
    normal.redelivered = True
    consumer = RecordingConsumer([normal])
    listener = ConcurrentListener(consumer, processor, POLL_MAX, concurrency=4)
    try:
        # When it polls the first: it is re-sent counted, not run
        listener.poll()
        assert [(d.id, delay) for d, delay, _ in consumer.retried] == [("n", 0.0)] and consumer.acked == []

        # When it polls the second while re-sends are refused: it runs as attempt 2
        held = make_delivery(id="h", attempt=1)
        held.redelivered = True
        refusing = RefusingResends([held])
        listener.consumer = refusing
        listener.poll()
        deadline = time.monotonic() + 5
        while not refusing.acked and time.monotonic() < deadline:
            listener.poll()
            time.sleep(0.01)
        assert refusing.retried == []
        assert [(d.id, d.attempt) for d in refusing.acked] == [("h", 2)]
    finally:
        listener.stop()


def test_while_resends_are_refused_a_redelivered_item_past_its_last_attempt_is_dead_lettered(
    processor: ItemProcessor,
) -> None:
    # (max_retries 2: attempt 3 is the last; counted in place, a redelivered attempt 3 is past it)
    redelivered = make_delivery(id="r", attempt=3)
    redelivered.redelivered = True
    consumer = RefusingResends([redelivered])
    QueueListener(consumer, processor, POLL_MAX).poll()
    assert consumer.acked == [] and [d.id for d, _ in consumer.dead] == ["r"]


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
