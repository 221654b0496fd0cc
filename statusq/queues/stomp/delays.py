"""Delayed re-delivery of retried items, in each broker's own way.

ActiveMQ schedules a message given ``AMQ_SCHEDULED_DELAY`` (needs ``schedulerSupport="true"``
on the broker, which the shipped broker config sets).  RabbitMQ has no per-message delay over
STOMP, so a retry waits in a holding queue whose TTL sends it back, through the default
exchange, to the queue it came from.  A queue's TTL is fixed, so delays are rounded up to a few
buckets: expiry is FIFO within a queue, and one TTL per queue keeps it exact.

An enqueue's ``delay`` or ``eta`` waits the same way (:func:`hold_route`).  Past the longest
bucket (an hour) it waits an hour at a time: the message carries its eta (``statusq-eta``), and
the worker that receives it early sends it back for the rest (``StompConsumer``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from statusq.errors import QueueError
from statusq.queues.stomp.destinations import site_group

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
    return _holding_queue(destination, bucket_ms(delay), physical)


def _holding_queue(destination: str, ttl: int, physical: Callable[[str], str]) -> tuple[str, dict[str, str]]:
    return f"{destination}.delay.{ttl}", {
        "x-message-ttl": str(ttl),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": physical(destination).removeprefix("/queue/"),
    }


def hold_route(
    flavor: str, destination: str, delay: float, physical: Callable[[str], str]
) -> tuple[str, dict[str, str]]:
    """Where an enqueued item waits out ``delay`` seconds, and the headers that hold it there:
    as a retry's, rounded up to the millisecond, so that it never arrives early."""
    ms = math.ceil(delay * 1000)
    if ms <= 0:
        return destination, {}
    if flavor == "activemq":
        return destination, {"AMQ_SCHEDULED_DELAY": str(ms)}
    if not destination.startswith("/queue/"):
        raise QueueError(f"RabbitMQ can hold a delayed item on a /queue/ destination only, not {destination}")
    ttl = BUCKETS_MS[min(bisect.bisect_left(BUCKETS_MS, ms), len(BUCKETS_MS) - 1)]
    return _holding_queue(destination, ttl, physical)


def early_route(destination: str, delay: float, physical: Callable[[str], str]) -> tuple[str, dict[str, str]]:
    """RabbitMQ: the longest holding queue not past ``delay`` (the shortest, if ``delay`` is
    shorter), for an item that carries its eta: it comes back early, at most by the bucket's
    gap, and the consumer sends it back for the rest until it is within ``EARLY_TOLERANCE``.
    A deferred item (a rate limit's place in line) must not arrive a whole bucket late: rounded
    up, a wait of 2.05 s was 5 s, and the limit was used at half its rate."""
    ms = int(delay * 1000)
    ttl = BUCKETS_MS[max(0, bisect.bisect_right(BUCKETS_MS, ms) - 1)]
    return _holding_queue(destination, ttl, physical)


def queue_declare_args(
    flavor: str,
    destination: str,
    headers: dict[str, str],
    *,
    basename: str,
    dead_letter: str,
    control: str | None = None,
    max_priority: int,
    queue_type: str = "classic",
) -> dict[str, str]:
    """The queue arguments a frame to ``destination`` must carry.  RabbitMQ declares a
    ``/queue/`` destination on SEND and SUBSCRIBE with the ``x-*`` headers of the frame, and
    every frame that may declare it must repeat the same arguments (another set is refused:
    PRECONDITION_FAILED), so this decides for all of them.

    ``queue_type = "quorum"``: every queue of ours (work queues, shards, breakouts, the
    dead-letter queue, holding queues, a ``/queue/`` control channel) gets ``x-queue-type``,
    and none ``x-max-priority``: quorum queues refuse it before RabbitMQ 4.0.  Classic queues
    are declared as before, without ``x-queue-type`` (older nodes refused ``classic`` on a queue
    declared without it).  Classic work queues get ``x-max-priority`` so that the broker
    dispatches higher priorities first (those under ``basename``, as before 2026-12: a control
    queue there too); not the dead-letter queue (browsed by operators' tools
    that know nothing of it) nor the holding queues (their own ``x-message-ttl`` arguments;
    priority means nothing there).  Queues not of ours (another prefix) get nothing."""
    if flavor != "rabbitmq" or not destination.startswith("/queue/"):
        return {}
    ours = destination.startswith(basename) or destination in (dead_letter, control)
    if not ours:
        return {}
    if queue_type == "quorum":
        return {"x-queue-type": "quorum"}
    if max_priority <= 0 or not destination.startswith(basename) or destination == dead_letter:
        return {}
    if "x-message-ttl" in headers:
        return {}
    return {"x-max-priority": str(max_priority)}


def site_queue_args(destination: str, *, basename: str, hold: float, physical: Callable[[str], str]) -> dict[str, str]:
    """RabbitMQ: the arguments of a hot site's queue (:mod:`statusq.queues.stomp.hot`), besides
    a work queue's.  An item waits there ``hold`` at most, then goes back (dead-lettered through
    the default exchange) to its group's unsharded queue, which every worker of the group takes
    from: a worker that took the last items may have cooled the site, or died, and no item must
    be left where nobody subscribes.  The queue is deleted once unused for twice ``hold``
    (x-expires), when every item in it has gone back: RabbitMQ drops what a deleted queue held."""
    group = site_group(destination, basename)
    if group is None:
        return {}
    ms = max(1, int(hold * 1000))
    return {
        "x-message-ttl": str(ms),
        "x-expires": str(2 * ms),
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": physical(basename + group).removeprefix("/queue/"),
    }
