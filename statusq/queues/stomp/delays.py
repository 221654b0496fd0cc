"""Delayed re-delivery of retried items, in each broker's own way.

ActiveMQ schedules a message given ``AMQ_SCHEDULED_DELAY`` (needs ``schedulerSupport="true"``
on the broker, which the shipped broker config sets).  RabbitMQ has no per-message delay over
STOMP, so a retry waits in a holding queue whose TTL sends it back, through the default
exchange, to the queue it came from.  A queue's TTL is fixed, so delays are rounded up to a few
buckets: expiry is FIFO within a queue, and one TTL per queue keeps it exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

BUCKETS_MS = [
    50,
    100,
    250,
    500,
    1000,
    2000,
    5000,
    10000,
    30000,
    60000,
    120000,
    300000,
    600000,
    1800000,
    3600000,
]


def bucket_ms(delay: float) -> int:
    index = bisect.bisect_left(BUCKETS_MS, int(delay * 1000))
    return BUCKETS_MS[min(index, len(BUCKETS_MS) - 1)]


def retry_route(
    flavor: str, destination: str, delay: float, physical: Callable[[str], str]
) -> tuple[str, dict[str, str]]:
    """Where to send a retried item, and the extra headers that make it wait ``delay`` seconds.

    ``physical`` maps a destination to the broker's own name for it (the dead-letter routing key
    must name the real queue)."""
    if delay <= 0:
        return destination, {}
    if flavor == "activemq":
        return destination, {"AMQ_SCHEDULED_DELAY": str(int(delay * 1000))}
    if not destination.startswith("/queue/"):
        return destination, {}
    ttl = bucket_ms(delay)
    return f"{destination}.delay.{ttl}", {
        "x-message-ttl": str(ttl),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": physical(destination).removeprefix("/queue/"),
    }
