"""The Dramatiq side of the peer bench (runs in the bench venv): the broker, one actor, a producer.

Worker:   PYTHONPATH=bench/peers dramatiq dramatiq_peer --processes 2 --threads 8
Producer: python bench/peers/dramatiq_peer.py --count N [--sleep S] [--gap G]

Configured from the environment by the driver (bench/peers/run.py): $PEERS_QUEUE (one queue per
run; Dramatiq adds "<queue>.DQ" and "<queue>.XQ", all deleted before and after), $PEERS_OUT (tally
file), $PEERS_CONFIRM=1 (RabbitmqBroker's confirm_delivery: each publish waits for the broker's
ack).  Prefetch is Dramatiq's own setting, $dramatiq_queue_prefetch (default 2 x threads), which
the driver sets for the no-op scenario.  Dramatiq acks after the actor returns.
"""

from __future__ import annotations

import os
import time

import dramatiq
import tally
from dramatiq.brokers.rabbitmq import RabbitmqBroker

QUEUE = os.environ.get("PEERS_QUEUE", "peers.dramatiq")
AMQP_URL = os.environ.get("PEERS_AMQP", "amqp://guest:guest@127.0.0.1:5673/%2F")

broker = RabbitmqBroker(url=AMQP_URL, confirm_delivery=os.environ.get("PEERS_CONFIRM") == "1")
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="peers_work", queue_name=QUEUE)
def work(item: int, sent: float, sleep: float) -> None:
    started = time.time()
    if sleep:
        time.sleep(sleep)
    tally.record(item, sent, started)


def send(item: int, sent: float, sleep: float) -> None:
    work.send(item, sent, sleep)


if __name__ == "__main__":
    tally.producer_main(send, broker.close)
