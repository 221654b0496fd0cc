"""The flow-control store (statusq.queues.db.flow) on SQLite and on a real PostgreSQL: the same
SQL text must mean the same on both, two workers racing for the last slot must not both get
it, and a rate check must stay cheap (one round trip on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from statusq.queues.db.flow import FlowStore, Lease


@pytest.fixture
def store(db_url: str) -> Iterator[FlowStore]:
    opened = FlowStore.open(db_url)
    yield opened
    opened.close()


def test_gcra_answers_alike_on_both_databases(store: FlowStore) -> None:
    now = 1_000_000.0
    answers = [
        store.take("t:push", now=now, interval=0.5, tolerance=0.5, horizon=10.0, token=f"{i:032d}") for i in range(4)
    ]
    assert [a.allowed for a in answers] == [True, True, False, False]
    # (the first interval counts from half an interval before now: now - 0.25 + 0.5, then + 0.5)
    assert answers[1].tat == pytest.approx(now + 0.75)
    assert [a.wait_tat - now for a in answers[2:]] == pytest.approx([1.25, 1.75])
    later = store.take("t:push", now=now + 0.5, interval=0.5, tolerance=0.5, horizon=10.0, token="z" * 32)
    assert later.allowed


def test_idle_buckets_are_pruned_alike_on_both_databases(store: FlowStore) -> None:
    now = 2_000_000.0
    store.take("k:push:idle", now=now, interval=1.0, tolerance=0.0, horizon=10.0, token="a" * 32)
    store.take("k:push:busy", now=now + 100, interval=1.0, tolerance=0.0, horizon=10.0, token="b" * 32)
    assert store.prune(now + 50) == 1
    again = store.take("k:push:idle", now=now + 100, interval=1.0, tolerance=0.0, horizon=10.0, token="c" * 32)
    held = store.take("k:push:busy", now=now + 100, interval=1.0, tolerance=0.0, horizon=10.0, token="d" * 32)
    assert again.allowed and not held.allowed


def test_two_workers_racing_for_one_slot_get_it_once(db_url: str) -> None:
    # Given two stores (two workers' connections) and a cap of 1, asked at once many times
    stores = [FlowStore.open(db_url), FlowStore.open(db_url)]
    won: list[Lease] = []
    barrier = threading.Barrier(2)

    def race(store: FlowStore, who: str) -> None:
        for round_ in range(30):
            barrier.wait(timeout=30)
            lease = store.acquire(f"race{round_}", 1, holder=who, lease=f"{who}{round_}", now=1.0, expires_at=100.0)
            if lease is not None:
                won.append(lease)

    threads = [threading.Thread(target=race, args=(s, f"w{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for s in stores:
        s.close()

    # Then each round's slot went to exactly one of them
    assert sorted(lease.scope for lease in won) == sorted(f"race{r}" for r in range(30))


@pytest.mark.postgres
def test_a_rate_check_costs_well_under_a_millisecond_on_postgresql(pg_url: str) -> None:
    store = FlowStore.open(pg_url)
    try:
        for i in range(50):  # warm: the connection, the plan
            store.take("t:warm", now=float(i), interval=0.001, tolerance=0.0, horizon=1.0, token=f"{i:032d}")
        started = time.perf_counter()
        n = 500
        for i in range(n):
            store.take("t:bench", now=float(i), interval=0.001, tolerance=0.0, horizon=1.0, token=f"{i:032d}")
        each = (time.perf_counter() - started) / n
    finally:
        store.close()
    print(f"rate check on PostgreSQL: {each * 1e6:.0f} us each")
    # A regression guard, not a benchmark: generous for a loaded 2-core machine.
    assert each < 0.005


def test_a_reader_makes_no_table_and_finds_the_store_once_made(db_url: str) -> None:
    # Given a database no daemon has used: a reader (statusq status, a scrape) gets no store,
    # and made no table (a read-only user could not have)
    assert FlowStore.for_reading(db_url) is None
    assert FlowStore.for_reading(db_url) is None

    # When a worker opens it, then the reader finds it
    FlowStore.open(db_url).close()
    reader = FlowStore.for_reading(db_url)
    assert reader is not None
    assert reader.running(time.time()) == {}
    reader.close()
