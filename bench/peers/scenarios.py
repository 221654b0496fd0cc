"""The four scenarios of the peer bench, each a list of rows and how one row is measured.

(1) no-op throughput: N items queued first, then the workers started; items/s from the first
    handler start to the last handler end.  One process taking one item at a time, and two
    processes at each system's default concurrency; prefetch 100 per worker process for all.
(2) I/O-bound: the handler sleeps 50 ms; two worker processes, 16 items in hand in all; each
    system's default prefetch.  statusq's async handler, 200 in hand in one process, beside.
(3) confirmed enqueue: one producer, one item at a time, each send waiting for the broker's
    confirmation (STOMP receipt; AMQP publisher confirm); counted on the queue afterwards.
(4) latency: enqueue -> handler start on an idle worker (one process, one item at a time),
    items sent one at a time 10 ms apart; p50 and p99.
"""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass

from harness import BenchFailure, Harness, Outcome
from systems import CELERY_PREFORK, CELERY_THREADS, DRAMATIQ, QUEUES, STATUSQ, Row

NOOP_PREFETCH = 100
IO_SLEEP = 0.05
ASYNC_CONCURRENCY = 200
ONE, TWO = "1 process, 1 in hand", "2 processes, default concurrency"
IO_GROUP = "2 processes, 16 in hand"
PRODUCER = "1 producer process"


@dataclass(frozen=True)
class Sizes:
    noop: int = 10000
    io: int = 2000
    io_serial: int = 200  # statusq's I/O row where it has no concurrency: 40 items/s
    enqueue: int = 2000
    samples: int = 200


def noop_rows() -> list[tuple[str, Row]]:
    return [
        (ONE, Row(STATUSQ, "statusq --workers 1")),
        (ONE, Row(CELERY_THREADS, "Celery --pool=threads -c 1")),
        (ONE, Row(CELERY_PREFORK, "Celery --pool=prefork -c 1")),
        (ONE, Row(DRAMATIQ, "Dramatiq --processes 1 --threads 1")),
        (TWO, Row(STATUSQ, "statusq --workers 2", processes=2)),
        (TWO, Row(CELERY_THREADS, "Celery --pool=threads -c 2, two workers", processes=2, concurrency=2)),
        (TWO, Row(CELERY_PREFORK, "Celery --pool=prefork -c 2", concurrency=2)),
        (TWO, Row(DRAMATIQ, "Dramatiq --processes 2 --threads 8", processes=2, concurrency=8)),
    ]


def io_rows(concurrency_supported: bool) -> list[tuple[str, Row]]:
    if concurrency_supported:
        ours = Row(STATUSQ, "statusq --workers 2, [daemon] concurrency = 8", processes=2, concurrency=8)
    else:
        note = "concurrency 1: this statusq has no [daemon] concurrency"
        ours = Row(STATUSQ, "statusq --workers 2 (concurrency 1)", processes=2, note=note)
    async_row = Row(
        STATUSQ, f"statusq async, --workers 1, concurrency {ASYNC_CONCURRENCY}", 1, ASYNC_CONCURRENCY, "peer_async"
    )
    return [
        (IO_GROUP, ours),
        (IO_GROUP, Row(CELERY_THREADS, "Celery --pool=threads -c 8, two workers", processes=2, concurrency=8)),
        (IO_GROUP, Row(CELERY_PREFORK, "Celery --pool=prefork -c 16 (16 children)", concurrency=16)),
        (IO_GROUP, Row(DRAMATIQ, "Dramatiq --processes 2 --threads 8", processes=2, concurrency=8)),
        ("1 process, async", async_row),
    ]


def enqueue_rows() -> list[tuple[str, Row]]:
    note = "the pool plays no part in enqueueing: one Celery row"
    return [
        (PRODUCER, Row(STATUSQ, "statusq enqueue (receipt per SEND)")),
        (PRODUCER, Row(CELERY_THREADS, "Celery apply_async (confirm_publish)", note=note)),
        (PRODUCER, Row(DRAMATIQ, "Dramatiq send (confirm_delivery)")),
    ]


def latency_rows() -> list[tuple[str, Row]]:
    return [("", row) for _, row in noop_rows()[:4]]


def throughput(h: Harness, row: Row, n: int, sleep: float, prefetch: int | None, concurrency: int | None) -> Outcome:
    """Fill the queue with ``n`` items, then start the workers and time them through it."""
    outcome = Outcome(row)
    h.reset(row)
    run = h.new_run(row, prefetch, concurrency, confirm=False)
    try:
        run.produce(0, n, sleep)
        run.wait_queued(n)
        run.start()
        # Generous: the slowest row (2 x 1 items at 50 ms) takes n x 25 ms.
        run.wait_for(range(n), deadline=60 + n * (sleep or 0.01))
    finally:
        run.stop()
    try:
        run.check(range(n), outcome)
        outcome.value = run.tally.rate()
    finally:
        h.reset(row)
    return outcome


class Unsupported(Exception):
    """This statusq lacks what the row needs: the row is skipped, not failed."""


def unsupported(why: str) -> Outcome:
    raise Unsupported(why)


def async_throughput(h: Harness, row: Row, n: int) -> Outcome:
    """The I/O row with statusq's async handler, once three items showed it is awaited.
    A statusq without async handlers calls ``handle``, gets a coroutine back and takes the item
    as done: nothing is recorded, and Python warns that the coroutine "was never awaited".  That
    is "unsupported"; anything else short of three items recorded is a failure."""
    h.reset(row)
    probe = h.new_run(row, None, row.concurrency, confirm=False)
    try:
        probe.produce(0, 3)
        probe.start()
        with contextlib.suppress(BenchFailure):
            probe.wait_for(range(3), deadline=5)
    finally:
        probe.stop()
        h.reset(row)
    count = probe.tally.read()
    if count == 0 and "was never awaited" in probe.log_text():
        raise Unsupported("this statusq does not await async handlers")
    if count < 3:
        raise BenchFailure(f"{row.label}: the async probe recorded {count} of 3 items{probe.log_tails()}")
    return throughput(h, row, n, IO_SLEEP, None, row.concurrency)


def enqueue_rate(h: Harness, row: Row, n: int) -> Outcome:
    """``n`` confirmed sends after one that opens the connection; all n+1 must be on the queue."""
    outcome = Outcome(row)
    h.reset(row)
    run = h.new_run(row, None, None, confirm=True)
    try:
        result = run.produce(0, n + 1)
        queued = h.ready_counts(row)[QUEUES[row.system][0]]
        if queued != n + 1:
            raise BenchFailure(f"{row.label}: {n + 1} items confirmed, {queued} on the queue")
        outcome.value, outcome.items = result["rate"], n + 1
    finally:
        h.reset(row)
    return outcome


def latency(h: Harness, row: Row, samples: int) -> Outcome:
    """Enqueue -> handler start.  Item 0 warms the worker up (and is waited for); item 1 is the
    producer's first send, which opens its connection: both are left out of the figures."""
    outcome = Outcome(row)
    h.reset(row)
    # Each producer as it comes: statusq's enqueue waits for the broker's receipt, Celery's and
    # Dramatiq's do not.  The stamp is taken before the send either way.
    run = h.new_run(row, None, None, confirm=row.system == STATUSQ)
    total = samples + 2
    try:
        run.start()
        run.produce(0, 1)
        run.wait_for(range(1), deadline=60)
        run.produce(1, samples + 1, gap=0.01)
        run.wait_for(range(total), deadline=60)
    finally:
        run.stop()
    try:
        run.check(range(total), outcome)
    finally:
        h.reset(row)
    lags = run.tally.lags_ms(skip={0, 1})
    outcome.value = statistics.median(lags)
    outcome.value2 = lags[max(0, round(len(lags) * 0.99) - 1)]
    return outcome
