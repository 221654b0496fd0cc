"""statusq.queues.memory: the in-memory backend's contract, on a fake clock."""

from __future__ import annotations

import logging
import math
import select
import threading
from collections.abc import Iterator

import pytest

from statusq.commands import SIGNATURE_HEADER, accept
from statusq.config import Config
from statusq.errors import DataError, QueueError
from statusq.item import Delivery
from statusq.queues.base import BacklogRow, Capability, Consumer, Subscription
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.runtime import Runtime, open_queue_manager
from tests.unit.fakes import FakeClock

CLAIM_TIMEOUT = 600.0
CHANNEL = "/topic/statusq.control"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def memory_config(**stomp: object) -> Config:
    return Config.model_validate({"queue": {"subsystem": "memory", "claim_timeout": CLAIM_TIMEOUT, "stomp": stomp}})


@pytest.fixture
def config() -> Config:
    return memory_config()


@pytest.fixture
def broker(clock: FakeClock) -> MemoryBroker:
    return MemoryBroker(clock=clock, claim_timeout=CLAIM_TIMEOUT)


@pytest.fixture
def queue(config: Config, broker: MemoryBroker) -> Iterator[MemoryQueueManager]:
    with MemoryQueueManager(config, broker) as manager:
        yield manager


def fetch(consumer: Consumer) -> Delivery:
    delivery = consumer.fetch()
    assert delivery is not None, "nothing ready"
    return delivery


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_enqueue_fetch_ack(queue: MemoryQueueManager, clock: FakeClock) -> None:
    consumer = queue.subscribe(Subscription())
    item_id = queue.enqueue({"n": 1}, "echo", site="example.org", headers={"k": "v"}, priority=7)

    delivery = fetch(consumer)

    assert (delivery.id, delivery.site, delivery.transport) == (item_id, "example.org", "echo")
    assert (delivery.body, delivery.content_type, delivery.headers) == (b'{"n":1}', "application/json", {"k": "v"})
    assert (delivery.attempt, delivery.priority, delivery.enqueued_at, delivery.error) == (1, 7, clock.now, None)
    assert queue.backlog() == [BacklogRow("example.org", "echo", in_flight=1)]
    assert consumer.fetch() is None  # never blocks, and the item is claimed

    consumer.ack(delivery)

    assert queue.backlog() == []
    assert queue.broker.acked == 1


def test_enqueue_refuses_what_the_db_backend_refuses(queue: MemoryQueueManager) -> None:
    with pytest.raises(DataError, match="invalid transport"):
        queue.enqueue({}, "Bad Name")
    with pytest.raises(DataError, match="not JSON-serializable"):
        queue.enqueue({"x": object()}, "echo")
    assert queue.backlog() == []


def test_a_retry_waits_for_its_delay_on_the_clock(queue: MemoryQueueManager, clock: FakeClock) -> None:
    consumer = queue.subscribe(Subscription())
    queue.enqueue({}, "echo")
    consumer.retry(fetch(consumer), 30.0, "ValueError: down")

    # Not before its delay has passed
    clock.advance(29.9)
    assert consumer.fetch() is None
    assert queue.backlog() == [BacklogRow("default", "echo", delayed=1)]

    # Then again, its attempt counted and the error kept
    clock.advance(0.1)
    assert queue.backlog() == [BacklogRow("default", "echo", ready=1)]
    delivery = fetch(consumer)
    assert (delivery.attempt, delivery.error) == (2, "ValueError: down")


def test_dead_letters_keep_reason_attempts_and_time(queue: MemoryQueueManager, clock: FakeClock) -> None:
    consumer = queue.subscribe(Subscription())
    first = queue.enqueue({"n": 1}, "echo", site="example.org", headers={"k": "v"})
    second = queue.enqueue({"n": 2}, "echo")
    # Sites take turns, in name order: "default" (second) first, then example.org (first)
    gone = fetch(consumer)
    assert gone.id == second
    consumer.dead_letter(gone, "no handler")
    consumer.retry(fetch(consumer), 0.0, "once")
    clock.advance(5)
    consumer.dead_letter(fetch(consumer), "gave up")

    newest, oldest = queue.dead_letters()
    assert (newest.id, newest.error, newest.attempts, newest.dead_at) == (first, "gave up", 2, clock.now)
    assert (newest.site, newest.headers, newest.body, newest.enqueued_at) == (
        "example.org",
        {"k": "v"},
        b'{"n":1}',
        clock.now - 5,
    )
    assert (oldest.id, oldest.error, oldest.attempts, oldest.dead_at) == (second, "no handler", 1, clock.now - 5)
    assert [d.id for d in queue.dead_letters(limit=1)] == [first]
    assert queue.backlog() == [BacklogRow("default", "echo", dead=1), BacklogRow("example.org", "echo", dead=1)]


def test_higher_priority_first_then_in_order_of_arrival(queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    low = queue.enqueue({}, "echo", priority=1)
    first, second = queue.enqueue({}, "echo"), queue.enqueue({}, "echo")
    urgent = queue.enqueue({}, "echo", priority=9)

    order = []
    while (delivery := consumer.fetch()) is not None:
        order.append(delivery.id)
        consumer.ack(delivery)

    assert order == [urgent, first, second, low]


def test_a_retried_item_keeps_its_place(queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    first = queue.enqueue({}, "echo")
    consumer.retry(fetch(consumer), 0.0, "again")
    second = queue.enqueue({}, "echo")

    assert [fetch(consumer).id, fetch(consumer).id] == [first, second]


def test_subscriptions_as_the_db_backend_claims(queue: MemoryQueueManager) -> None:
    # Given items for a handled, a foreign and an unknown transport
    for transport in ("mine", "theirs", "nobody"):
        queue.enqueue({}, transport, site="a.example")
    queue.enqueue({}, "mine", site="b.example")
    known = frozenset({"mine", "theirs"})

    def taken(subscription: Subscription) -> list[tuple[str, str]]:
        consumer = queue.subscribe(subscription)
        got = []
        while (delivery := consumer.fetch()) is not None:
            got.append((delivery.transport, delivery.site))
        consumer.close()  # gives everything back for the next look
        return got

    assert taken(Subscription(transports=frozenset({"mine"}), known_transports=known)) == [
        ("mine", "a.example"),
        ("mine", "b.example"),
    ]
    # (sites take turns, as on the database: a.example's oldest, b.example's, a.example's next)
    assert taken(Subscription(transports=frozenset({"mine"}), catch_unknown=True, known_transports=known)) == [
        ("mine", "a.example"),
        ("mine", "b.example"),
        ("nobody", "a.example"),
    ]
    assert taken(Subscription(sites=frozenset({"b.example"}))) == [("mine", "b.example")]
    assert len(taken(Subscription())) == 4


def test_two_consumers_never_get_the_same_item(queue: MemoryQueueManager) -> None:
    one, two = queue.subscribe(Subscription()), queue.subscribe(Subscription())
    ids = {queue.enqueue({"n": n}, "echo") for n in range(4)}

    got = [fetch(one).id, fetch(two).id, fetch(one).id, fetch(two).id]

    assert sorted(got) == sorted(ids)
    assert one.fetch() is None and two.fetch() is None


def test_consumers_on_threads_each_item_once(queue: MemoryQueueManager) -> None:
    # Given 400 items and four consumers, each on its own thread
    ids = [queue.enqueue({"n": n}, "echo") for n in range(400)]
    consumers = [queue.subscribe(Subscription()) for _ in range(4)]
    taken: list[list[str]] = [[] for _ in consumers]

    def drain(consumer: Consumer, into: list[str]) -> None:
        while (delivery := consumer.fetch()) is not None:
            into.append(delivery.id)
            consumer.ack(delivery)

    # When they drain the queue together
    threads = [threading.Thread(target=drain, args=pair) for pair in zip(consumers, taken, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # Then every item was handled once
    assert sorted(i for ids_ in taken for i in ids_) == sorted(ids)
    assert queue.broker.acked == 400 and queue.backlog() == []


def test_release_claims_gives_a_dead_workers_items_back_counted(queue: MemoryQueueManager) -> None:
    dead, alive = queue.subscribe(Subscription()), queue.subscribe(Subscription())
    queue.enqueue({}, "echo")
    queue.enqueue({}, "echo")
    held = fetch(dead)
    kept = fetch(alive)

    assert queue.release_claims(dead.claim_owner or "", "worker 123 killed by SIGKILL") == 1
    assert queue.release_claims("nobody", "gone") == 0

    again = fetch(alive)
    assert (again.id, again.attempt, again.error) == (held.id, 2, "worker 123 killed by SIGKILL")
    alive.ack(kept)
    assert queue.backlog() == [BacklogRow("default", "echo", in_flight=1)]


def test_closing_a_consumer_gives_back_untouched_what_it_holds(queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    queue.enqueue({}, "echo")
    fetch(consumer)

    consumer.close()

    delivery = fetch(queue.subscribe(Subscription()))
    assert (delivery.attempt, delivery.error) == (1, None)


def test_a_claim_past_claim_timeout_is_taken_back(
    queue: MemoryQueueManager, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker that hung on an item past claim_timeout
    hung, other = queue.subscribe(Subscription()), queue.subscribe(Subscription())
    queue.enqueue({}, "echo")
    stale = fetch(hung)
    clock.advance(CLAIM_TIMEOUT)
    assert other.fetch() is None
    clock.advance(1)

    # When another worker looks, it takes the item, the attempt counted
    taken = fetch(other)
    assert (taken.attempt, taken.error) == (2, "claim expired: the worker holding it died or hung")

    # And the hung worker's late ack is refused and logged, not applied
    with caplog.at_level(logging.WARNING):
        hung.ack(stale)
    assert "claim lost before ack" in caplog.text
    assert queue.backlog() == [BacklogRow("default", "echo", in_flight=1)]


def test_requeue_dead_with_a_fresh_attempt_count(queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    first, second = queue.enqueue({}, "echo", priority=3), queue.enqueue({}, "echo")
    consumer.dead_letter(fetch(consumer), "down")
    consumer.dead_letter(fetch(consumer), "down")

    assert queue.requeue_dead([first, "no-such-id"]) == 1

    delivery = fetch(consumer)
    assert (delivery.id, delivery.attempt, delivery.priority, delivery.error) == (first, 1, 3, None)
    assert [d.id for d in queue.dead_letters()] == [second]
    assert queue.requeue_dead() == 1
    assert queue.dead_letters() == []


def test_purge_dead(queue: MemoryQueueManager) -> None:
    consumer = queue.subscribe(Subscription())
    ids = [queue.enqueue({}, "echo") for _ in range(3)]
    for _ in ids:
        consumer.dead_letter(fetch(consumer), "down")

    assert queue.purge_dead([ids[1], "no-such-id"]) == 1
    assert [d.id for d in queue.dead_letters()] == [ids[2], ids[0]]
    assert queue.purge_dead() == 2
    assert queue.purge_dead() == 0
    assert queue.backlog() == []


def test_control_reaches_every_control_channel_with_the_channels_headers(broker: MemoryBroker) -> None:
    # Given a producer and two workers' control channels on one broker, protected by a secret
    config = memory_config(control_secret="memory-control-secret")
    producer, worker = MemoryQueueManager(config, broker), MemoryQueueManager(config, broker)
    one, two = worker.control_channel(), worker.control_channel()
    assert one is not None and two is not None
    consumer = worker.subscribe(Subscription())
    assert not one.pending()

    # When a command is sent
    producer.send_control("update-site example.org")

    # Then each channel has it once, in a form statusq.control accepts
    for channel in (one, two):
        assert channel.pending() and channel.timeout() == 0
        [(headers, body)] = channel.take()
        assert headers["destination"] == CHANNEL and "memory-control-secret" not in str(headers)  # signed, not sent
        assert headers[SIGNATURE_HEADER]
        assert str(accept(headers, body, channel=CHANNEL, secret="memory-control-secret")) == "update-site example.org"
        assert not channel.pending() and channel.take() == [] and channel.timeout() == math.inf
    # And a channel opened afterwards does not get it (a topic), nor does the item consumer
    later = worker.control_channel()
    assert later is not None and later.take() == []
    assert consumer.fetch() is None


def test_bad_control_commands_are_refused_at_the_sender(queue: MemoryQueueManager) -> None:
    channel = queue.control_channel()
    assert channel is not None
    with pytest.raises(DataError, match="unknown control command"):
        queue.send_control("reboot")
    assert not channel.pending()

    no_channel = memory_config(control_channel=None)
    with pytest.raises(QueueError, match="no control channel"):
        MemoryQueueManager(no_channel).send_control("reload")
    assert MemoryQueueManager(no_channel).control_channel() is None
    assert Capability.CONTROL not in MemoryQueueManager(no_channel).admin.capabilities


def test_wake_descriptors_item_consumers_on_enqueue_control_channels_on_control(queue: MemoryQueueManager) -> None:
    consumer, channel = queue.subscribe(Subscription()), queue.control_channel()
    assert channel is not None
    [fd], [control_fd] = consumer.filenos(), channel.filenos()
    assert not readable(fd) and not readable(control_fd)

    queue.enqueue({}, "echo")
    assert readable(fd) and not readable(control_fd)
    consumer.drain_wakeups()
    assert not readable(fd)

    queue.send_control("reload")
    assert readable(control_fd) and not readable(fd)
    channel.drain_wakeups()
    assert not readable(control_fd)


def test_each_manager_built_from_config_has_its_own_broker(config: Config) -> None:
    runtime = Runtime(config)
    one, two = open_queue_manager(runtime), open_queue_manager(runtime)
    assert isinstance(one, MemoryQueueManager) and isinstance(two, MemoryQueueManager)

    one.enqueue({}, "echo")

    assert two.subscribe(Subscription()).fetch() is None
    assert one.subscribe(Subscription()).fetch() is not None
