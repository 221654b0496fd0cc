"""The database consumer's pure parts: how many items a claim asks for, and the settlement
writer's windows (its thread with a recording flush in place of a database)."""

from __future__ import annotations

import threading

from statusq.queues.db.claims import ClaimSize, in_claim_order
from statusq.queues.db.settler import ACK, RETRY, Settlement, SettlementWriter


def test_claim_size_follows_the_workers_pace_between_one_and_the_cap() -> None:
    sizes = ClaimSize(None, cap=100, hold=0.1)
    assert sizes.next() == 1, "a fresh worker takes one: it knows nothing of its pace yet"
    sizes.claimed(1, now=10.0)
    sizes.ran_out(now=10.001)  # 1,000 items/s
    assert sizes.next() == 100
    sizes.claimed(100, now=20.0)
    sizes.ran_out(now=120.0)  # 1 item/s: slow items are claimed one at a time
    assert sizes.next() == 1
    sizes.claimed(1, now=130.0)
    sizes.ran_out(now=130.05)  # 20/s
    assert sizes.next() == 2


def test_claim_size_ignores_empty_claims_and_keeps_a_fixed_prefetch() -> None:
    sizes = ClaimSize(None, cap=100, hold=0.1)
    sizes.claimed(0, now=1.0)
    sizes.ran_out(now=50.0)
    assert sizes.next() == 1
    fixed = ClaimSize(10)
    fixed.claimed(10, now=0.0)
    fixed.ran_out(now=100.0)
    assert fixed.next() == 10


def test_claimed_rows_run_highest_priority_first_then_oldest() -> None:
    rows = [{"id": 5, "priority": 4}, {"id": 2, "priority": 4}, {"id": 9, "priority": 9}, {"id": 1, "priority": 0}]
    assert [r["id"] for r in in_claim_order(rows)] == [9, 2, 5, 1]


class Flushes:
    def __init__(self, fail: int = 0) -> None:
        self.windows: list[list[Settlement]] = []
        self.fail = fail
        self.event = threading.Event()

    def __call__(self, window: list[Settlement]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("database down")
        self.windows.append(window)
        self.event.set()


def test_writer_flushes_within_ack_flush_while_the_worker_is_busy() -> None:
    flushes = Flushes()
    writer = SettlementWriter(flushes, flush_after=0.05, batch=100)
    writer.start()
    try:
        writer.record(Settlement(ACK, 1))
        writer.record(Settlement(RETRY, 2, "x", 0.0, "boom"))
        # the worker's thread does nothing more: the writer's own thread writes the window
        assert flushes.event.wait(5)
        assert [[s.item_id for s in w] for w in flushes.windows] == [[1, 2]]
    finally:
        assert writer.stop(5)


def test_writer_writes_a_full_batch_at_once_and_the_rest_at_stop() -> None:
    flushes = Flushes()
    writer = SettlementWriter(flushes, flush_after=60.0, batch=3)
    writer.start()
    for n in range(4):
        writer.record(Settlement(ACK, n))
    assert flushes.event.wait(5), "a full batch does not wait for ack_flush"
    assert writer.stop(5)
    assert [s.item_id for w in flushes.windows for s in w] == [0, 1, 2, 3]


def test_a_claim_takes_the_pending_window_and_gives_it_back_if_its_transaction_failed() -> None:
    flushes = Flushes()
    writer = SettlementWriter(flushes, flush_after=60.0, batch=100)
    writer.record(Settlement(ACK, 1))
    taken = writer.take()
    assert [s.item_id for s in taken] == [1] and len(writer) == 0
    writer.record(Settlement(ACK, 2))
    writer.give_back(taken)
    assert [s.item_id for s in writer.take()] == [1, 2], "given back ahead of what came since"


def test_a_failed_write_is_kept_and_tried_again() -> None:
    flushes = Flushes(fail=1)
    writer = SettlementWriter(flushes, flush_after=0.01, batch=100)
    writer.start()
    try:
        writer.record(Settlement(ACK, 7))
        assert flushes.event.wait(10), "tried again after the pause"
        assert [s.item_id for w in flushes.windows for s in w] == [7]
    finally:
        assert writer.stop(5)


def test_hurry_writes_at_once_when_the_worker_is_idle() -> None:
    flushes = Flushes()
    writer = SettlementWriter(flushes, flush_after=60.0, batch=100)
    writer.start()
    try:
        writer.record(Settlement(ACK, 1))
        writer.hurry()
        assert flushes.event.wait(5), "written now, not at the 60 s deadline"
    finally:
        assert writer.stop(5)
