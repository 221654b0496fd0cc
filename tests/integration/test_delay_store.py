"""Delays held in the shared store (statusq.queues.db.delays), on SQLite and PostgreSQL: only due
rows go, in due order, each to one relay; a row leaves only once the broker confirmed it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from statusq.errors import QueueError
from statusq.queues.db.delays import Delayed, DelayStore, delayed_items


@pytest.fixture
def store(db_url: str) -> Iterator[DelayStore]:
    s = DelayStore.open(db_url)
    yield s
    s.close()


def row(n: int, due_at: float) -> Delayed:
    return Delayed(f"/queue/q/{n}", f'{{"n":{n}}}'.encode(), {"statusq-id": str(n), "persistent": "true"}, due_at)


def test_due_rows_go_in_due_order_and_the_rest_wait(store: DelayStore) -> None:
    store.put([row(1, 200.0), row(2, 100.0), row(3, 300.0), row(4, 150.0)])
    assert store.next_due() == 100.0

    sent: list[Delayed] = []
    assert store.relay(sent.extend, now=200.0) == 3
    assert [d.headers["statusq-id"] for d in sent] == ["2", "4", "1"]
    assert sent[0] == row(2, 100.0), "destination, body, headers and due time as written"
    assert store.count() == 1 and store.next_due() == 300.0
    assert store.relay(sent.extend, now=250.0) == 0 and len(sent) == 3


def test_a_send_that_fails_leaves_the_rows_for_the_next_try(store: DelayStore) -> None:
    store.put([row(1, 1.0), row(2, 2.0)])

    def refused(items: list[Delayed]) -> None:
        raise QueueError("the broker is full")

    with pytest.raises(QueueError, match="full"):
        store.relay(refused, now=10.0)
    assert store.count() == 2
    sent: list[Delayed] = []
    assert store.relay(sent.extend, now=10.0) == 2 and store.count() == 0


def test_a_batch_is_at_most_batch_rows(store: DelayStore) -> None:
    store.put([row(n, float(n)) for n in range(7)])
    sent: list[Delayed] = []
    assert store.relay(sent.extend, now=100.0, batch=3) == 3
    assert [d.due_at for d in sent] == [0.0, 1.0, 2.0] and store.count() == 4


def test_relays_at_once_send_each_row_once(db_url: str) -> None:
    # Given 300 due rows and four relays, each its own engine (as four workers)
    first = DelayStore.open(db_url)
    first.put([row(n, float(n)) for n in range(300)])
    stores = [first, *(DelayStore.open(db_url) for _ in range(3))]
    sent: list[str] = []
    lock = threading.Lock()

    def send(items: list[Delayed]) -> None:
        with lock:
            sent.extend(d.headers["statusq-id"] for d in items)

    def drain(store: DelayStore) -> None:
        while store.relay(send, now=1000.0, batch=20):
            pass

    # When they relay at once
    threads = [threading.Thread(target=drain, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # Then every row went exactly once
    assert sorted(sent, key=int) == [str(n) for n in range(300)]
    assert first.count() == 0
    for s in stores:
        s.close()


def test_the_summary_counts_what_waits_and_what_is_late(store: DelayStore) -> None:
    store.put([row(1, 100.0), row(2, 195.0), row(3, 300.0)])
    summary = store.summary(now=200.0, late_after=10.0)
    assert (summary.waiting, summary.late, summary.earliest) == (3, 1, 100.0), "row 2 is due, not late yet"
    assert store.summary(now=50.0).late == 0


def test_rows_a_relay_is_sending_are_not_sent_by_another_until_its_claim_runs_out(db_url: str) -> None:
    # Given a relay that claimed two due rows and is still waiting on its broker
    first, second = DelayStore.open(db_url), DelayStore.open(db_url)
    first.put([row(1, 1.0), row(2, 2.0)])
    looked: list[int] = []

    def slow_send(items: list[Delayed]) -> None:
        # When another relay looks meanwhile, it finds nothing free to send
        looked.append(second.relay(lambda more: pytest.fail("sent twice"), now=10.0))
        raise QueueError("no receipt")  # and then the first one's broker does not answer

    with pytest.raises(QueueError):
        first.relay(slow_send, now=10.0, claim_for=60.0)
    assert looked == [0]
    # Then the failed claim was given up: the rows go at the next try, whoever makes it
    sent: list[Delayed] = []
    assert second.relay(sent.extend, now=11.0) == 2 and first.count() == 0
    first.close()
    second.close()


def test_a_claim_left_by_a_relay_that_died_runs_out(store: DelayStore) -> None:
    store.put([row(1, 1.0)])
    with store.engine.begin() as conn:  # as a relay killed between its claim and its send would leave it
        conn.execute(delayed_items.update().values(claimed_until=70.0))
    sent: list[Delayed] = []
    assert store.relay(sent.extend, now=69.0) == 0, "claimed"
    assert store.relay(sent.extend, now=71.0) == 1, "the claim ran out"
