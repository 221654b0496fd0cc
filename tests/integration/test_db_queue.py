"""DBQueueManager against real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import select
import time
from pathlib import Path

import pytest

from statusq.config import Config, DaemonConfig, QueueConfig
from statusq.errors import DataError
from statusq.queues.base import Subscription
from statusq.queues.db import DBQueueManager
from statusq.queues.db.consumer import DBConsumer
from statusq.queues.db.listen import open_listener
from statusq.queues.db.schema import NOTIFY_CHANNEL
from tests.conftest import closed_after_test, pg_schema


def manager(url: str, **queue: object) -> DBQueueManager:
    # No time limit, so that short claim timeouts are allowed.
    config = Config(queue=QueueConfig(db_url=url, **queue), daemon=DaemonConfig(time_limit=0))  # type: ignore[arg-type]
    return closed_after_test(DBQueueManager(config))


def test_enqueue_fetch_ack_round_trip(db_url: str) -> None:
    qm = manager(db_url)
    item_id = qm.enqueue({"text": "héllo"}, "demo", site="example.org", headers={"k": "v"})
    consumer = qm.subscribe(Subscription())

    delivery = consumer.fetch()

    assert delivery is not None
    assert (delivery.id, delivery.site, delivery.transport) == (item_id, "example.org", "demo")
    assert delivery.body == '{"text":"héllo"}'.encode()
    assert delivery.headers == {"k": "v"} and delivery.attempt == 1
    assert consumer.fetch() is None, "a claimed item is not handed out twice"
    consumer.ack(delivery)
    consumer.flush()  # settlements are written on a clock (ack_flush); a test reads at once
    assert qm.backlog() == []


def test_ids_are_never_reused_after_a_delete(db_url: str) -> None:
    # SQLite reuses the largest rowid unless the table is AUTOINCREMENT: ids in logs and dead
    # letters would then name two different items.
    qm = manager(db_url)
    consumer = qm.subscribe(Subscription())
    first = qm.enqueue(1, "demo")
    delivery = consumer.fetch()
    assert delivery is not None
    consumer.ack(delivery)
    assert qm.enqueue(2, "demo") != first


def test_retry_waits_for_its_backoff_and_counts_the_attempt(db_url: str) -> None:
    qm = manager(db_url)
    qm.enqueue(1, "demo")
    consumer = qm.subscribe(Subscription())
    first = consumer.fetch()
    assert first is not None

    consumer.retry(first, 0.3, "ValueError: boom")
    consumer.flush()

    assert consumer.fetch() is None, "not before its backoff"
    [row] = qm.backlog()
    assert (row.ready, row.delayed, row.in_flight) == (0, 1, 0)
    deadline = time.monotonic() + 10
    second = None
    while second is None and time.monotonic() < deadline:
        second = consumer.fetch()
        time.sleep(0.02)
    assert second is not None and second.id == first.id
    assert second.attempt == 2 and second.error == "ValueError: boom"


def test_dead_letter_keeps_reason_and_requeue_restores_the_item(db_url: str) -> None:
    qm = manager(db_url)
    item_id = qm.enqueue({"n": 1}, "demo", site="a.example")
    consumer = qm.subscribe(Subscription())
    delivery = consumer.fetch()
    assert delivery is not None

    consumer.dead_letter(delivery, "no handler registered for transport 'demo'")
    consumer.flush()

    [letter] = qm.dead_letters()
    assert (letter.id, letter.site, letter.attempts) == (item_id, "a.example", 1)
    assert letter.error == "no handler registered for transport 'demo'"
    assert [(r.site, r.dead, r.ready) for r in qm.backlog()] == [("a.example", 1, 0)]
    assert qm.requeue_dead([item_id]) == 1
    assert qm.dead_letters() == []
    again = consumer.fetch()
    assert again is not None and again.id == item_id and again.attempt == 1
    consumer.dead_letter(again, "still broken")
    consumer.flush()
    assert qm.purge_dead(None) == 1 and qm.dead_letters() == []


def test_higher_priority_first_then_fifo(db_url: str) -> None:
    qm = manager(db_url)
    low = qm.enqueue("low", "demo", priority=1)
    a = qm.enqueue("a", "demo")
    b = qm.enqueue("b", "demo")
    high = qm.enqueue("high", "demo", priority=9)
    consumer = qm.subscribe(Subscription())
    order = []
    while (d := consumer.fetch()) is not None:
        order.append(d.id)
        consumer.ack(d)
    assert order == [high, a, b, low]


def test_subscription_filters_transports_and_sweeps_unknown_ones(db_url: str) -> None:
    qm = manager(db_url)
    mine = qm.enqueue(1, "xmppout")
    theirs = qm.enqueue(2, "distrib")
    unknown = qm.enqueue(3, "nobody")
    xmpp = qm.subscribe(Subscription(transports=frozenset({"xmppout"})))
    main = qm.subscribe(
        Subscription(
            transports=frozenset({"distrib"}),
            catch_unknown=True,
            known_transports=frozenset({"distrib", "xmppout"}),
        )
    )
    got_xmpp = xmpp.fetch()
    assert got_xmpp is not None and got_xmpp.id == mine
    assert xmpp.fetch() is None
    got_main = {d.id for d in (main.fetch(), main.fetch()) if d is not None}
    assert got_main == {theirs, unknown}


def test_expired_claim_is_taken_back_with_the_attempt_counted(db_url: str) -> None:
    # Given a worker that claimed an item and then died (it never settles it)
    qm = manager(db_url, claim_timeout=0.5)
    item_id = qm.enqueue(1, "demo")
    dead_worker = qm.subscribe(Subscription())
    assert dead_worker.fetch() is not None
    survivor = qm.subscribe(Subscription())
    assert survivor.fetch() is None, "a fresh claim is respected"
    # When the claim is older than claim_timeout
    deadline = time.monotonic() + 10
    delivery = None
    while delivery is None and time.monotonic() < deadline:
        time.sleep(0.1)
        delivery = survivor.fetch()
    # Then another worker gets it, as attempt 2, knowing why
    assert delivery is not None and delivery.id == item_id
    assert delivery.attempt == 2
    assert delivery.error is not None and "claim expired" in delivery.error


def test_settling_a_lost_claim_changes_nothing(db_url: str) -> None:
    qm = manager(db_url, claim_timeout=0.2)
    qm.enqueue(1, "demo")
    slow = qm.subscribe(Subscription())
    first = slow.fetch()
    assert first is not None
    time.sleep(0.3)
    fast = qm.subscribe(Subscription())
    second = fast.fetch()
    assert second is not None
    slow.ack(first)  # too late: the claim is another worker's now
    slow.flush()
    [row] = qm.backlog()
    assert row.in_flight == 1
    fast.ack(second)
    fast.flush()
    assert qm.backlog() == []


def test_bad_input_is_refused_before_anything_is_stored(db_url: str) -> None:
    qm = manager(db_url)
    with pytest.raises(DataError, match="transport"):
        qm.enqueue(1, "Bad Transport!")
    with pytest.raises(DataError, match="site"):
        qm.enqueue(1, "demo", site="../etc")
    with pytest.raises(DataError, match="priority"):
        qm.enqueue(1, "demo", priority=10)
    with pytest.raises(DataError, match="JSON"):
        qm.enqueue({"x": object()}, "demo")
    assert qm.backlog() == []


def _claim_all(url: str, out: multiprocessing.Queue[list[str]]) -> None:
    qm = manager(url)
    consumer = qm.subscribe(Subscription())
    got = []
    misses = 0
    while misses < 20:
        delivery = consumer.fetch()
        if delivery is None:
            misses += 1
            time.sleep(0.01)
            continue
        misses = 0
        got.append(delivery.id)
        consumer.ack(delivery)
    out.put(got)


def test_two_processes_never_claim_the_same_item(db_url: str) -> None:
    qm = manager(db_url)
    ids = {qm.enqueue({"n": n}, "demo") for n in range(600)}
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(db_url, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    claimed = results[0] + results[1]
    assert len(claimed) == len(set(claimed)), "an item was claimed twice"
    assert set(claimed) == ids


@pytest.mark.postgres
def test_postgres_enqueue_wakes_a_listening_consumer(pg_url: str) -> None:
    qm = manager(pg_url)
    consumer = qm.subscribe(Subscription())
    assert isinstance(consumer, DBConsumer)
    [fd] = consumer.filenos()
    other = manager(pg_url)

    other.enqueue(1, "demo")

    readable, _, _ = select.select([fd], [], [], 10)
    assert readable == [fd], "NOTIFY did not wake the consumer"
    consumer.drain_wakeups()
    readable, _, _ = select.select([fd], [], [], 0)
    assert readable == [], "drain_wakeups consumes the notification"
    consumer.close()


@pytest.mark.postgres
def test_an_enqueue_in_another_schema_of_the_database_wakes_no_listener_of_this_one(pg_url: str) -> None:
    # Given a listener of this schema, and another deployment in a schema of its own of the same
    # database (NOTIFY channels are the database's)
    listener = closed_after_test(open_listener(manager(pg_url).engine, NOTIFY_CHANNEL))
    with pg_schema() as other_url:
        # When the other enqueues first, then this one (delivered in commit order, if at all)
        manager(other_url).enqueue(1, "theirs")
        manager(pg_url).enqueue(2, "mine")

        # Then the first the listener hears of is its own schema's
        first = next(listener.notifies(timeout=10), None)
        assert first is not None and first.payload == "mine", first


def test_sqlite_file_is_created_with_its_folder(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'q.sqlite'}"
    manager(url).enqueue(1, "demo")
    assert (tmp_path / "deep" / "er" / "q.sqlite").exists()


def test_closing_the_manager_writes_its_consumers_settlements_and_hands_back_their_claims(db_url: str) -> None:
    # Given a consumer that claimed three items at once, finished one (its ack waits for the
    # hour-long flush clock) and was never closed by its owner
    qm = manager(db_url, ack_flush=3600, db={"prefetch": 3})
    ids = [qm.enqueue(n, "demo") for n in range(3)]
    consumer = qm.subscribe(Subscription())
    done = consumer.fetch()
    assert done is not None and done.id == ids[0]
    consumer.ack(done)

    # When the manager is closed
    qm.close()

    # Then the finished item is gone, and the two claimed but not handed out are free at once
    # (not after claim_timeout), their attempt not counted
    other = manager(db_url).subscribe(Subscription())
    again = [other.fetch(), other.fetch()]
    assert [(d.id, d.attempt) for d in again if d is not None] == [(ids[1], 1), (ids[2], 1)]
    assert other.fetch() is None, "the finished item's ack was written"
