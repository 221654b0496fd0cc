"""Headers on the wire, and a received frame turned into a Delivery.

Messages from statusq carry ``statusq-*`` headers.  Messages from foreign producers (raw STOMP
clients, ActiveMQ's OpenWire tools) carry none: their transport and site come from the breakout
destination they were sent to, and a body without a content type is handed over as bytes.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from statusq.defaults import BYTES_TYPE
from statusq.item import Delivery
from statusq.queues.stomp.destinations import Destinations

SITE = "statusq-site"
TRANSPORT = "statusq-transport"
ATTEMPT = "statusq-attempt"
ENQUEUED_AT = "statusq-enqueued-at"
ID = "statusq-id"
ERROR = "statusq-error"
ATTEMPTS = "statusq-attempts"
ORIGINAL_DESTINATION = "statusq-original-destination"
DEAD_AT = "statusq-dead-at"
SECRET = "statusq-secret"
#: Epoch seconds after which the item is not run but dead-lettered as expired.
EXPIRES = "statusq-expires"
#: Epoch seconds before which a delayed item may not run: a worker that gets it earlier (a
#: RabbitMQ delay past the longest holding queue's) sends it back to wait the rest.
ETA = "statusq-eta"
#: Set by the shared store's relay (statusq.io.delays) on an item back from its wait, as ActiveMQ's
#: scheduler sets ``scheduledJobId``: such an item is not counted toward a hot site.  A broker
#: header in effect: never copied onto a re-send (which would then never count again).
RELAYED = "statusq-relayed"
#: Marks a message sent only to have RabbitMQ declare its queue (it expires at once, unread; a
#: worker that gets it acks it unseen): see StompQueueManager._declare_targets.
DECLARE = "statusq-declare"

#: Headers the broker sets per delivery; never copied onto a re-sent message.
BROKER_HEADERS = frozenset(
    {
        "message-id",
        "destination",
        "subscription",
        "ack",
        "redelivered",
        "expires",
        "timestamp",
        "content-length",
        "receipt",
        "transaction",
        "reply-to",
        "persistent",
        "original-destination",
        "x-message-ttl",
        "x-max-priority",
        "x-queue-type",  # RabbitMQ copies the declaring SEND's arguments into the message
        "x-delivery-count",  # a quorum queue's count of earlier deliveries
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-expires",
        "AMQ_SCHEDULED_DELAY",
        "scheduledJobId",
        RELAYED,
        "message",
        "JMSXUserID",
        "type",
        "correlation-id",
    }
)
#: Headers that are not the producer's own: the broker's, the content type and the priority.
#: (``priority`` is not a broker header: a re-sent item — a retry, a hold, a release — keeps it.)
_NOT_USER = BROKER_HEADERS | {"content-type", "priority"}
_KNOWN = _NOT_USER | {
    SITE,
    TRANSPORT,
    ATTEMPT,
    ENQUEUED_AT,
    ID,
    ERROR,
    ATTEMPTS,
    ORIGINAL_DESTINATION,
    DEAD_AT,
    SECRET,
    EXPIRES,
    ETA,
}
MAX_ERROR = 900  # brokers limit header sizes; the full error is in the worker's log

#: What every send adds to a message's headers (:func:`delivery_mode`).
Outgoing = Callable[[dict[str, str]], dict[str, str]]


@dataclass(slots=True)
class FrameToken:
    """Everything needed to settle or re-send a delivery later."""

    ack_id: str
    subscription: str
    destination: str
    headers: dict[str, str]
    generation: int  # the connection it arrived on; acks on a newer one are void


def delivery_mode(persistent: bool) -> Outgoing:
    """Delivery mode on every send.  RabbitMQ turns ``persistent:false`` on a new queue into an
    exclusive auto-delete one, so a non-persistent send simply leaves the header out."""
    if persistent:
        return lambda headers: {**headers, "persistent": "true"}
    return lambda headers: headers


def new_headers(
    site: str, transport: str, content_type: str, item_id: str | None = None, enqueued_at: str | None = None
) -> dict[str, str]:
    """A new item's headers; a batch passes ids from :func:`new_ids` and one time for all."""
    return {
        ID: item_id or uuid.uuid4().hex,
        SITE: site,
        TRANSPORT: transport,
        ATTEMPT: "1",
        ENQUEUED_AT: enqueued_at or f"{time.time():.6f}",
        "content-type": content_type,
    }


def new_ids(n: int) -> list[str]:
    """``n`` ids as ``uuid.uuid4().hex`` makes them (random, version 4), from one read of the
    system's random source: uuid4 made a system call and a UUID object per id."""
    raw = bytearray(os.urandom(16 * n))
    raw[6::16] = bytes([b & 0x0F | 0x40 for b in raw[6::16]])  # version 4
    raw[8::16] = bytes([b & 0x3F | 0x80 for b in raw[8::16]])  # the RFC 4122 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * n, 32)]


def copy_headers(delivery: Delivery, token: FrameToken, **changes: str) -> dict[str, str]:
    """Headers for a re-send of ``delivery``: user headers kept (with what middleware added to
    ``delivery.headers``, e.g. the attempt's span for the next one's link), statusq's made explicit."""
    headers = {k: v for k, v in token.headers.items() if k not in BROKER_HEADERS}
    headers.update(delivery.headers)
    headers.update(
        {
            ID: delivery.id,
            SITE: delivery.site,
            TRANSPORT: delivery.transport,
            ATTEMPT: str(delivery.attempt),
            ENQUEUED_AT: f"{delivery.enqueued_at:.6f}",
            "content-type": delivery.content_type,
        }
    )
    headers.update(changes)
    return headers


def float_or(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default


#: Unix times a frame may carry (1970 to 2100): anything else is a foreign producer's mistake,
#: and ``datetime.fromtimestamp`` raises on NaN, infinities and far years.
_LATEST = 4_102_444_800.0


def _time(value: str | None, per_second: float = 1.0) -> float | None:
    seconds = float_or(value, -1.0) / per_second
    return seconds if 0.0 < seconds <= _LATEST else None  # NaN fails both comparisons


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def to_delivery(
    frame_headers: dict[str, str], body: bytes, destinations: Destinations, default_site: str, generation: int
) -> Delivery:
    """A frame as the processor sees it.  Never raises: what cannot be known is left empty, and
    the processor dead-letters it with the reason (an empty transport has no handler).

    ``frame_headers`` becomes the token's own (no copy: the link made one off stomp.py's frame).
    """
    headers = frame_headers
    destination = headers.get("destination", "")
    transport, site = headers.get(TRANSPORT), headers.get(SITE)
    if not (transport and site):  # a foreign producer's: the destination tells
        route = destinations.route(destination)
        transport = transport or (route.transport if route else None) or ""
        site = site or (route.site if route else None) or default_site
    enqueued = _time(headers.get(ENQUEUED_AT))
    if enqueued is None:  # a foreign producer's: the broker's own timestamp, in milliseconds
        enqueued = _time(headers.get("timestamp"), per_second=1000.0) or time.time()
    priority = _int(headers.get("priority"), -1)
    expires = float_or(headers.get(EXPIRES), 0.0)
    if headers.keys() <= _KNOWN:  # a statusq item with no headers of its producer's: the usual case
        user = {}
    else:
        user = {k: v for k, v in headers.items() if k not in _NOT_USER and not k.startswith("statusq-")}
    return Delivery(
        id=headers.get(ID) or headers.get("message-id", ""),
        site=site,
        transport=transport,
        body=body,
        content_type=headers.get("content-type") or BYTES_TYPE,
        headers=user,
        attempt=max(1, _int(headers.get(ATTEMPT), 1)),
        enqueued_at=enqueued,
        priority=priority if 0 <= priority <= 9 else None,
        expires_at=expires if expires > 0 else None,
        token=FrameToken(
            ack_id=headers.get("ack") or headers.get("message-id", ""),
            subscription=headers.get("subscription", ""),
            destination=destination,
            headers=headers,
            generation=generation,
        ),
        error=headers.get(ERROR),
        redelivered=headers.get("redelivered") == "true",
    )


def as_text(value: Any) -> str:
    """Header values must be text; truncated so a long traceback cannot exceed broker limits."""
    text = str(value).replace("\n", " ").replace("\r", " ")
    return text if len(text) <= MAX_ERROR else text[: MAX_ERROR - 3] + "..."
