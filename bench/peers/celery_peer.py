"""The Celery side of the peer bench (runs in the bench venv): the app, its one task, a producer.

Worker:   PYTHONPATH=bench/peers celery -A celery_peer worker --pool=threads -c 8 ...
Producer: python bench/peers/celery_peer.py --count N [--sleep S] [--gap G]

Configured from the environment by the driver (bench/peers/run.py): $PEERS_QUEUE (one queue per
run, deleted before and after), $PEERS_OUT (tally file), $PEERS_PREFETCH (messages per worker
process; unset: Celery's default multiplier 4 x concurrency), $PEERS_CONFIRM=1 (publisher
confirms: each publish waits for the broker's ack).  Acks are late (after the task), as statusq
and Dramatiq ack: at-least-once for all three.  Results are ignored: none of the three stores one.
"""

from __future__ import annotations

import os
import time
from typing import Any

import tally
from celery import Celery

QUEUE = os.environ.get("PEERS_QUEUE", "peers.celery")
AMQP_URL = os.environ.get("PEERS_AMQP", "amqp://guest:guest@127.0.0.1:5673//")

app = Celery("celery_peer", broker=AMQP_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=True,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"confirm_publish": os.environ.get("PEERS_CONFIRM") == "1"},
    worker_hijack_root_logger=False,
)
if os.environ.get("PEERS_PREFETCH"):
    # Celery sets prefetch as a multiple of the process's concurrency: PEERS_CONCURRENCY tells it.
    per_process = int(os.environ["PEERS_PREFETCH"])
    app.conf.worker_prefetch_multiplier = max(1, per_process // int(os.environ.get("PEERS_CONCURRENCY", "1")))


@app.task(name="peers.work")  # type: ignore[untyped-decorator]
def work(item: int, sent: float, sleep: float) -> None:
    started = time.time()
    if sleep:
        time.sleep(sleep)
    tally.record(item, sent, started)


if __name__ == "__main__":
    # One connection of its own, closed with AMQP's handshake at the end: a process that exits
    # with the pool's connection open may have its last unconfirmed publishes dropped by the
    # broker (a socket closed with unread data is reset), as 119 of 5,000 once were.
    with app.connection_for_write() as connection:
        producer = app.amqp.Producer(connection)

        def send(item: int, sent: float, sleep: float) -> Any:
            return work.apply_async((item, sent, sleep), producer=producer)

        tally.producer_main(send)
