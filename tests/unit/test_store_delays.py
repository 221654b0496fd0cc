"""Delays held in the shared store (``[queue.stomp] delays``): where the producer and a worker put
a delayed SEND, the fallback when the store cannot be written, and the relay's timing.  The
broker is a fake (tests/e2e/test_delays_store.py has the real ones); the store is a real SQLite."""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import pytest

from statusq import Item
from statusq.config import StompConfig
from statusq.errors import BrokerFull
from statusq.io.delays import BUSY_WITHIN, FIRST_BACKOFF, MOST_BACKOFF, DelayRelaying
from statusq.queues.db.delays import Delayed, DelayStore, delayed_items
from statusq.queues.stomp import wire
from statusq.queues.stomp.storedelays import DUE, StoreDelays
from tests.unit.test_stomp_enqueue import MAIN, consumer_with, frame, manager


def rows(db_url: str) -> list[Delayed]:
    sent: list[Delayed] = []
    store = DelayStore.open(db_url)
    store.relay(sent.extend, now=math.inf)
    store.close()
    return sent


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.sqlite'}"


@pytest.mark.parametrize(("mode", "flavor", "wanted"), [
    ("auto", "activemq", True),
    ("auto", "rabbitmq", False),
    ("auto", None, None),
    ("store", "rabbitmq", True),
    ("store", None, True),
    ("broker", "activemq", False),
])  # fmt: skip
def test_auto_holds_delays_in_the_store_on_activemq_only(mode: str, flavor: str | None, wanted: bool | None) -> None:
    assert StoreDelays(mode, "sqlite:///unused").wanted(flavor) is wanted
    assert StompConfig().delays == "auto"


def test_a_delayed_enqueue_on_activemq_waits_in_the_store_not_the_scheduler(db_url: str) -> None:
    # Given a producer on ActiveMQ with the default delays
    qm, link = manager("activemq", delays="auto", db_url=db_url)
    before = time.time()

    # When it enqueues a delayed item
    item_id = qm.enqueue({}, "distrib", delay=30, expires="1h")

    # Then nothing went to the broker; the store has it, due in 30 s, as it will be sent then
    assert link.sent == [] and link.batches == []
    [held] = rows(db_url)
    assert held.destination == MAIN and held.headers[wire.ID] == item_id
    assert before + 30 <= held.due_at <= time.time() + 30.001  # to the ms, rounded up
    assert float(held.headers[wire.ETA]) == pytest.approx(held.due_at, abs=0.002)
    assert held.headers["persistent"] == "true" and wire.EXPIRES in held.headers
    assert not {DUE, "AMQ_SCHEDULED_DELAY"} & held.headers.keys()
    assert qm.delays.earliest == held.due_at, "this process's relay wakes for it"


def test_a_batch_sends_what_is_due_and_holds_the_rest_ids_in_order(db_url: str) -> None:
    qm, link = manager("activemq", delays="auto", db_url=db_url)
    ids = qm.enqueue_many([Item({"n": n}, "distrib", delay=60 if n % 2 else None) for n in range(4)])
    [(sends, _)] = link.batches
    assert [h[wire.ID] for _, _, h in sends] == [ids[0], ids[2]]
    assert [d.headers[wire.ID] for d in rows(db_url)] == [ids[1], ids[3]]


def test_rabbitmq_with_delays_in_the_store_declares_no_holding_queue(db_url: str) -> None:
    qm, link = manager("rabbitmq", delays="store", db_url=db_url)
    qm.enqueue({}, "distrib", delay=3)
    assert link.sent == [], "no holding queue, no declaring message"
    [held] = rows(db_url)
    assert held.destination == MAIN and "x-message-ttl" not in held.headers


def test_a_store_that_cannot_be_written_falls_back_to_the_scheduler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a db_url whose file cannot be made (its parent is a file)
    (tmp_path / "afile").write_text("")
    qm, link = manager("activemq", delays="auto", db_url=f"sqlite:///{tmp_path / 'afile' / 'x.sqlite'}")

    # When a delayed item is enqueued, it goes to ActiveMQ's scheduler, with a warning
    with caplog.at_level(logging.WARNING):
        before = time.monotonic()
        qm.enqueue({}, "distrib", delay=2)
        spent_ms = (time.monotonic() - before) * 1000
    [(destination, _, headers)] = [s for batch, _ in link.batches for s in batch] + link.sent
    # the same due time: 2 s from the enqueue, less what the failed try took
    assert destination == MAIN and DUE not in headers
    assert 2000 - spent_ms - 1 <= int(headers["AMQ_SCHEDULED_DELAY"]) <= 2001
    assert "not held in the shared store" in caplog.text


def test_a_retry_on_activemq_is_held_in_the_store_and_its_original_acked(db_url: str) -> None:
    # Given a worker on ActiveMQ with delays in the store, and an item it ran
    consumer, writer = consumer_with("activemq", frame(None, 1), delays=StoreDelays("auto", db_url))
    delivery = consumer.fetch()
    assert delivery is not None

    # When the item is retried in 5 s
    consumer.retry(delivery, 5.0, "boom")

    # Then the retry waits in the store (its attempt counted) and the original is a plain ACK
    assert writer.resends == [] and writer.acks == [(7, "ack-1")]
    [held] = rows(db_url)
    assert held.destination == "/queue/statusq/main"  # the frame's own destination
    assert held.headers[wire.ATTEMPT] == "2" and held.headers[wire.ERROR] == "boom"
    assert time.time() + 4 < held.due_at <= time.time() + 5.001  # to the ms, rounded up


def test_an_early_item_on_activemq_waits_the_rest_in_the_store(db_url: str) -> None:
    consumer, writer = consumer_with("activemq", frame(time.time() + 30), delays=StoreDelays("auto", db_url))
    assert consumer.fetch() is None
    assert writer.resends == [] and writer.acks == [(7, "ack-1")]
    [held] = rows(db_url)
    assert time.time() + 29 < held.due_at <= time.time() + 30.002  # its eta to the ms, rounded up again


# -- the relay ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def relay_with(db_url: str, flavor: str | None = "activemq") -> tuple[DelayRelaying, StoreDelays, Clock, list[Delayed]]:
    clock = Clock()
    delays = StoreDelays("auto", db_url, clock=clock)
    sent: list[Delayed] = []
    relay = DelayRelaying(delays, sent.extend, lambda: flavor, every=0.25, clock=clock)
    return relay, delays, clock, sent


def test_the_relay_wakes_for_its_own_row_at_its_time_and_sends_it(db_url: str) -> None:
    relay, delays, clock, sent = relay_with(db_url)
    delays.wake = threading.Event()
    assert relay.look() == 0 and relay.wait() == pytest.approx(0.25)
    delays.hold([Delayed("/queue/a", b"x", {}, clock.now + 5)])
    assert delays.wake.is_set(), "the relay's thread is woken to look at its time"
    delays.wake.clear()
    delays.hold([Delayed("/queue/c", b"x", {}, clock.now + 6)])
    assert not delays.wake.is_set(), "not sooner than a row it knows of"
    delays.hold([Delayed("/queue/b", b"x", {}, clock.now + 0.1)])
    assert delays.wake.is_set(), "sooner: woken again"
    assert relay.wait() == pytest.approx(0.1)
    clock.now += 0.1
    assert relay.look() == 1 and [d.destination for d in sent] == ["/queue/b"]
    assert relay.wait() == pytest.approx(0.25), "another process's row may come meanwhile"
    clock.now += 4.9
    assert relay.wait() == 0.0 and relay.busy()
    assert relay.look() == 1 and [d.destination for d in sent] == ["/queue/b", "/queue/a"]
    assert relay.sent == 2 and relay.busy(), "the row due in a second"
    clock.now += 1
    assert relay.look() == 1 and not relay.busy()


def test_the_relay_sees_a_row_of_another_process_at_its_next_look(db_url: str) -> None:
    relay, _, clock, sent = relay_with(db_url)
    relay.look()
    other = DelayStore.open(db_url)
    other.put([Delayed("/queue/b", b"y", {}, clock.now + 1)])
    other.close()
    clock.now += 0.25
    relay.look()
    assert relay.wait() == pytest.approx(0.25)
    assert relay.busy(), f"a row due within {BUSY_WITHIN} s keeps --idle-exit waiting"
    clock.now += 1
    assert relay.look() == 1 and len(sent) == 1


def test_a_refused_relay_keeps_the_rows_backs_off_and_tries_one_row_at_a_time(db_url: str) -> None:
    # Given three due rows and a broker that refuses
    clock = Clock()
    delays = StoreDelays("auto", db_url, clock=clock)
    delays.hold([Delayed(f"/queue/{n}", b"x", {}, clock.now) for n in range(3)])
    refusing = [True]
    tries: list[int] = []

    def send(items: list[Delayed]) -> None:
        tries.append(len(items))
        if refusing[0]:
            raise BrokerFull("the broker is full")

    relay = DelayRelaying(delays, send, lambda: "activemq", every=0.25, clock=clock)

    # When it looks, again and again: the waits double up to the most, and after the first
    # refusal each try is of one row (a try whose outcome stays unknown may land later)
    waits = []
    for _ in range(7):
        assert relay.look() == 0 and relay.busy()
        waits.append(relay.wait())
        clock.now += waits[-1]
    assert waits == [FIRST_BACKOFF * 2**n for n in range(5)] + [MOST_BACKOFF, MOST_BACKOFF]
    assert tries == [3, 1, 1, 1, 1, 1, 1]

    # Then once the broker takes a row, the rest go in a batch at the next look
    refusing[0] = False
    assert relay.look() == 1 and relay.wait() == 0.0
    assert relay.look() == 2 and delays.store().count() == 0


def test_on_rabbitmq_with_auto_the_relay_turns_itself_off(db_url: str) -> None:
    kind: list[str | None] = [None]
    clock = Clock()
    relay = DelayRelaying(
        StoreDelays("auto", db_url, clock=clock), list.append, lambda: kind[0], every=0.25, clock=clock
    )
    assert relay.look() == 0 and relay.wait() == pytest.approx(0.25), "waits to know the broker"
    kind[0] = "rabbitmq"
    clock.now += 1
    assert relay.look() == 0
    assert relay.off and relay.wait() == math.inf and not relay.busy()


def test_rows_another_relay_is_sending_are_looked_at_again_later_not_at_once(db_url: str) -> None:
    relay, delays, clock, sent = relay_with(db_url)
    delays.hold([Delayed("/queue/a", b"x", {}, clock.now)])
    with delays.store().engine.begin() as conn:  # another worker's relay claimed it, and sends it
        conn.execute(delayed_items.update().values(claimed_until=clock.now + 60))
    assert relay.look() == 0 and sent == []
    assert relay.wait() == pytest.approx(0.25), "not a busy loop while the other one sends"
