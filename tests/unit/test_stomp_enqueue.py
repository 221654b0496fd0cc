"""What the STOMP producer puts on the wire for delays, expiry and batches, and how a worker sends
back a delayed item that came early: pure logic, no broker (tests/e2e/test_enqueueing.py has the
real ones)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from statusq import InvalidArgument, Item
from statusq.config import Config, StompConfig
from statusq.defaults import DEFAULT_SITE, STOMP_SHARDS
from statusq.queues.stomp import StompQueueManager, wire
from statusq.queues.stomp.consumer import EARLY_TOLERANCE, StompConsumer
from statusq.queues.stomp.delays import early_route, hold_route
from statusq.queues.stomp.destinations import rabbitmq_name, shard_of
from statusq.queues.stomp.holds import Holds
from statusq.queues.stomp.link import Frame, Send
from statusq.queues.stomp.settlements import Superseded
from statusq.queues.stomp.settler import Resend
from statusq.queues.stomp.storedelays import StoreDelays

BASE = "/queue/statusq/"
#: The default site's shard of the main group ([queue.stomp] shards, 4 by default): where the
#: tests' items (no site given) go, and RabbitMQ's name for it.
SHARD = f"main/shard-{shard_of(DEFAULT_SITE, STOMP_SHARDS)}"
MAIN, MAIN_RABBIT = BASE + SHARD, "statusq." + SHARD.replace("/", ".")


def rabbit_physical(destination: str) -> str:
    return rabbitmq_name(destination)


@dataclass
class FakeLink:
    """Records what the manager would write, as the broker ``flavor`` would get it."""

    flavor: str
    batches: list[tuple[list[Send], bool]] = field(default_factory=list)
    sent: list[Send] = field(default_factory=list)

    def physical(self, destination: str) -> str:
        return rabbit_physical(destination) if self.flavor == "rabbitmq" else destination

    def send(self, destination: str, body: bytes, headers: dict[str, str], *, confirm: bool) -> None:
        self.sent.append((destination, body, headers))

    def send_batch(self, sends: list[Send], *, confirm_each: bool) -> None:
        self.batches.append((list(sends), confirm_each))


def manager(flavor: str, *, delays: str = "broker", db_url: str | None = None) -> tuple[StompQueueManager, FakeLink]:
    """The producer, its link a fake; delays the broker's way unless ``delays`` says otherwise
    (tests/unit/test_store_delays.py has the shared store's)."""
    queue = {"subsystem": "stomp", "db_url": db_url, "stomp": {"delays": delays}}
    qm = StompQueueManager(Config.model_validate({"queue": queue}))
    link = FakeLink(flavor)
    qm._link = lambda: link  # type: ignore[assignment,method-assign,return-value]
    return qm, link


def test_activemq_holds_a_delay_in_its_scheduler_to_the_millisecond() -> None:
    qm, link = manager("activemq")
    before = time.time()
    qm.enqueue({}, "distrib", delay=1.0004, expires="1h")
    [(destination, _, headers)] = link.sent
    assert destination == MAIN
    assert headers["AMQ_SCHEDULED_DELAY"] == "1001", "rounded up: never early"
    # epoch seconds to the millisecond
    assert before + 1 - 0.001 <= float(headers[wire.ETA]) <= time.time() + 1.001
    assert before + 3600 - 0.001 <= float(headers[wire.EXPIRES]) <= time.time() + 3600.001
    assert headers["persistent"] == "true"


def test_rabbitmq_holds_a_delay_in_the_holding_queue_of_the_next_bucket_up() -> None:
    qm, link = manager("rabbitmq")
    qm.enqueue({}, "distrib", delay=3)
    [declare, (destination, _, headers)] = link.sent
    assert destination == MAIN + ".delay.5000"
    assert headers["x-message-ttl"] == "5000" and headers["x-dead-letter-routing-key"] == MAIN_RABBIT
    # The queue the holding queue passes it on to is declared first, by a message that expires
    # at once: RabbitMQ drops what is passed on to a queue that does not exist yet
    assert declare[0] == MAIN and declare[1] == b""
    assert declare[2][wire.DECLARE] == "1" and declare[2]["expiration"] == "0"
    # once per connection
    qm.enqueue({}, "distrib", delay=3)
    qm.enqueue_many([Item({}, "distrib", delay=3)])
    assert len(link.sent) == 3 and len(link.batches) == 1


def test_an_item_without_timing_options_carries_none() -> None:
    qm, link = manager("rabbitmq")
    qm.enqueue({}, "distrib")
    [(destination, _, headers)] = link.sent
    assert destination == MAIN
    assert not {wire.ETA, wire.EXPIRES, "x-message-ttl", "AMQ_SCHEDULED_DELAY"} & headers.keys()


def test_a_batch_is_one_write_in_order_with_ids_and_rabbitmq_confirms_each() -> None:
    for flavor, confirm_each in (("activemq", False), ("rabbitmq", True)):
        qm, link = manager(flavor)
        ids = qm.enqueue_many([Item({"n": n}, "distrib", delay=60 if n == 1 else None) for n in range(3)])
        [(sends, confirmed)] = link.batches
        assert confirmed is confirm_each
        assert [headers[wire.ID] for _, _, headers in sends] == ids
        assert [body for _, body, _ in sends] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
        assert wire.ETA in sends[1][2] and wire.ETA not in sends[0][2]


def test_reserved_headers_refuse_the_whole_batch_before_anything_is_written() -> None:
    qm, link = manager("activemq")
    with pytest.raises(InvalidArgument, match=r"^items\[1\]: headers: may not set statusq-"):
        qm.enqueue_many([Item(1, "distrib"), Item(2, "distrib", headers={"statusq-site": "x"})])
    assert link.batches == []


def test_a_delay_beyond_the_longest_bucket_waits_an_hour_at_a_time() -> None:
    destination, headers = hold_route("rabbitmq", BASE + "main", 5 * 3600, rabbit_physical)
    assert destination == BASE + "main.delay.3600000" and headers["x-message-ttl"] == "3600000"


# -- a worker that gets a delayed item before its eta -------------------------------------------


@dataclass
class FakeWriter:
    resends: list[tuple[int, Resend]] = field(default_factory=list)
    acks: list[tuple[int, str]] = field(default_factory=list)
    holds: Holds = field(default_factory=lambda: Holds("fake writer"))
    superseded: Superseded = field(default_factory=Superseded)

    def ack(self, generation: int, ack_id: str) -> None:
        self.acks.append((generation, ack_id))

    def resend(self, generation: int, resend: Resend) -> None:
        self.resends.append((generation, resend))

    def hurry(self) -> None:
        pass

    @property
    def refusing(self) -> bool:
        return self.holds.active


class FakeConsumerLink(FakeLink):
    generation = 7
    connected = True

    def __init__(self, flavor: str, frames: list[Frame]) -> None:
        super().__init__(flavor)
        self.frames: Any = _Frames(frames)


class _Frames:
    def __init__(self, frames: list[Frame]) -> None:
        self.items = list(frames)

    def empty(self) -> bool:
        return not self.items

    def get_nowait(self) -> Frame:
        return self.items.pop(0)


def consumer_with(flavor: str, *frames: Frame, delays: StoreDelays | None = None) -> tuple[StompConsumer, FakeWriter]:
    """A StompConsumer without a broker: its link and settlement writer replaced by fakes;
    ``delays``: where its delayed re-sends wait (None: the broker's way)."""
    from collections import deque

    from statusq.queues.stomp.destinations import Destinations

    consumer = object.__new__(StompConsumer)
    writer = FakeWriter()
    consumer.link = FakeConsumerLink(flavor, list(frames))  # type: ignore[assignment]
    consumer.writer = writer  # type: ignore[assignment]
    consumer.delays = delays
    consumer.routes = Destinations(BASE, [])
    consumer.default_site = "default"
    consumer.outgoing = wire.delivery_mode(True)
    consumer._pending = {"sub-0": deque()}
    consumer._turns = deque(["sub-0"])
    consumer._fetching = threading.Lock()
    consumer._shared = {}
    consumer._start_hot(StompConfig())
    return consumer, writer


def frame(eta: float | None, n: int = 1) -> Frame:
    headers = {
        "destination": BASE + "main",
        "subscription": "sub-0",
        "ack": f"ack-{n}",
        "message-id": f"m-{n}",
        "redelivered": "false",
        **wire.new_headers("a.example", "distrib", "application/json"),
    }
    if eta is not None:
        headers[wire.ETA] = f"{eta:.3f}"
    return Frame(7, headers, b"{}")


def test_an_item_that_came_before_its_eta_is_sent_back_to_wait_the_rest() -> None:
    # Given a RabbitMQ delivery two hours before its eta, then one that is due
    early, due = frame(time.time() + 7200, 1), frame(time.time() - 1, 2)
    consumer, writer = consumer_with("rabbitmq", early, due)

    # When the worker fetches
    delivery = consumer.fetch()

    # Then it gets the due one; the early one went back with the ACK of its delivery, an hour's
    # hold, its eta and attempt kept, no broker header copied
    assert delivery is not None and delivery.id == due.headers[wire.ID]
    [(generation, resend)] = writer.resends
    assert (generation, resend.ack_id) == (7, "ack-1")
    assert resend.destination == BASE + "main.delay.3600000"
    assert resend.headers[wire.ETA] == early.headers[wire.ETA]
    assert resend.headers[wire.ATTEMPT] == "1" and resend.headers[wire.ID] == early.headers[wire.ID]
    assert "redelivered" not in resend.headers and "ack" not in resend.headers
    assert consumer.fetch() is None


def test_frames_waiting_behind_a_long_item_are_handed_back_counts_intact() -> None:
    # Given two frames fetched ahead while the worker's only slot runs a long item
    waiting = [frame(None, 1), frame(None, 2)]
    consumer, writer = consumer_with("rabbitmq", *waiting)

    # When the keeper first looks, it only notes them; when it looks again past the age, each
    # goes back with the ACK of its delivery, its attempt kept, no broker header copied
    assert consumer.give_back_waiting(older_than=0.0) == 0 and writer.resends == []
    assert consumer.give_back_waiting(older_than=0.0) == 2
    assert [(g, r.ack_id) for g, r in writer.resends] == [(7, "ack-1"), (7, "ack-2")]
    assert all(r.destination == BASE + "main" and r.headers[wire.ATTEMPT] == "1" for _, r in writer.resends)
    assert all("redelivered" not in r.headers and "ack" not in r.headers for _, r in writer.resends)
    assert consumer.fetch() is None  # nothing left to run twice


def test_frames_younger_than_the_age_stay() -> None:
    consumer, writer = consumer_with("rabbitmq", frame(None, 1))
    consumer.give_back_waiting(older_than=3600.0)
    assert consumer.give_back_waiting(older_than=3600.0) == 0 and writer.resends == []
    delivery = consumer.fetch()
    assert delivery is not None and delivery.token.ack_id == "ack-1"


def test_a_producers_declaring_message_is_acked_unseen() -> None:
    declaring = frame(None, 1)
    declaring.headers[wire.DECLARE] = "1"
    consumer, writer = consumer_with("rabbitmq", declaring, frame(None, 2))
    delivery = consumer.fetch()
    assert delivery is not None and delivery.token.ack_id == "ack-2"
    assert writer.acks == [(7, "ack-1")]


def test_an_item_on_time_or_a_moment_early_runs() -> None:
    consumer, writer = consumer_with("activemq", frame(time.time() + EARLY_TOLERANCE / 2), frame(None, 2))
    assert consumer.fetch() is not None and consumer.fetch() is not None
    assert writer.resends == []


def test_on_activemq_an_early_item_waits_the_rest_in_the_scheduler() -> None:
    consumer, writer = consumer_with("activemq", frame(time.time() + 30))
    assert consumer.fetch() is None
    [(_, resend)] = writer.resends
    assert resend.destination == BASE + "main"
    assert 29_000 <= int(resend.headers["AMQ_SCHEDULED_DELAY"]) <= 30_001


@pytest.mark.parametrize(
    ("wait", "bucket"), [(0.01, 50), (0.05, 50), (0.3, 250), (2.05, 2000), (3.0, 2000), (7200.0, 3600000)]
)
def test_a_deferred_wait_takes_the_longest_holding_queue_not_past_it(wait: float, bucket: int) -> None:
    # A rate limit's turn: rounded up, a 2.05 s wait was 5 s; rounded down, the item comes back
    # early with its eta and is sent back for the rest (below), never run early
    destination, headers = early_route(BASE + "main", wait, rabbit_physical)
    assert destination == f"{BASE}main.delay.{bucket}" and headers["x-message-ttl"] == str(bucket)


def test_a_deferred_item_back_early_waits_the_rest_in_hops_not_a_whole_bucket() -> None:
    # Given a RabbitMQ delivery 1.2 s before its eta (a deferred item's second hop)
    consumer, writer = consumer_with("rabbitmq", frame(time.time() + 1.2, 1))
    assert consumer.fetch() is None
    # Then it waits in the 1 s queue (then 0.2 s more), not the 2 s one
    [(_, resend)] = writer.resends
    assert resend.destination == BASE + "main.delay.1000"


def test_a_redelivered_original_of_a_confirmed_re_send_is_acked_unrun() -> None:
    # Given the writer knows item 1's re-send was confirmed but its original's ACK was lost
    original, other = frame(None, 1), frame(None, 2)
    original.headers["redelivered"] = "true"
    consumer, writer = consumer_with("activemq", original, other)
    writer.superseded.add([original.headers[wire.ID]])
    # When the worker fetches, it gets the other item; the original was acked, not run
    delivery = consumer.fetch()
    assert delivery is not None and delivery.token.ack_id == "ack-2"
    assert writer.acks == [(7, "ack-1")] and consumer.fetch() is None
