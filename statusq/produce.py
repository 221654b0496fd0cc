"""An item on its way in: checked, timed and encoded into a :class:`Message`, the same for every
backend (:meth:`QueueManager.enqueue` and ``enqueue_many`` call :func:`prepare`).

Every check happens here, before anything is sent, so a batch with one bad item enqueues nothing.
Each error is an :class:`InvalidArgument` naming the argument.  Times are resolved against the
manager's clock: ``delay`` and ``eta`` become a delay in seconds from now (a backend holds it: a
database's ``available_at``, ActiveMQ's scheduler, a RabbitMQ holding queue), ``expires`` an epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from statusq import codec, names
from statusq.defaults import ETA_TOLERANCE, JSON_TYPE
from statusq.errors import DataError, InvalidArgument
from statusq.item import Item, Message
from statusq.units import parse_duration

#: Headers a keyed item carries its key in (statusq.queues.keys reads them back in the worker).
KEY_HEADER = "x-statusq-key"
UNIQUE_FOR_HEADER = "x-statusq-unique-for"
#: The rate key a producer gives an item (``headers={RATE_KEY_HEADER: "remote.example"}``):
#: ``[transports.NAME] key_rate_limit`` then limits each key's items apart (statusq.flow).
RATE_KEY_HEADER = "x-statusq-rate-key"
#: A key longer than this (in UTF-8) is refused.
MAX_KEY_BYTES = 200

T = TypeVar("T")


def _checked(argument: str, check: Callable[..., T], *values: Any) -> T:
    try:
        return check(*values)
    except InvalidArgument:
        raise
    except DataError as exc:
        raise InvalidArgument(argument, str(exc)) from None


def _seconds(argument: str, value: float | str | timedelta) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidArgument(argument, str(exc)) from None


def _epoch(argument: str, value: datetime) -> float:
    if value.tzinfo is None or value.utcoffset() is None:
        # A naive time means the local zone to one reader and UTC to another (Celery took it as
        # UTC, then as the configured zone): refused rather than guessed.
        raise InvalidArgument(argument, f"{value.isoformat()} has no time zone (use e.g. datetime.now(UTC) + ...)")
    return value.timestamp()


def delay_of(delay: float | str | timedelta | None, eta: datetime | None, now: float) -> float:
    """Seconds from ``now`` until the item may run.  An ``eta`` up to ``ETA_TOLERANCE`` seconds
    in the past is taken as now (one computed a moment ago, a clock a little behind); earlier
    is refused, as a negative delay is."""
    if delay is not None and eta is not None:
        raise InvalidArgument("eta", "give delay or eta, not both")
    if eta is not None:
        if not isinstance(eta, datetime):
            raise InvalidArgument("eta", f"must be an aware datetime, not {type(eta).__name__}")
        ahead = _epoch("eta", eta) - now
        if ahead < -ETA_TOLERANCE:
            raise InvalidArgument("eta", f"{eta.isoformat()} is {-ahead:.0f}s in the past")
        return max(ahead, 0.0)
    if delay is None:
        return 0.0
    return _seconds("delay", delay)


def expiry_of(expires: float | str | timedelta | datetime | None, delay: float, now: float) -> float | None:
    """The epoch after which the item is not run; it must fall after the item may first run."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        at = _epoch("expires", expires)
    else:
        seconds = _seconds("expires", expires)
        if seconds <= 0:
            raise InvalidArgument("expires", "must be more than 0 seconds")
        at = now + seconds
    if at <= now + delay:
        when = "now" if delay == 0 else "the item's delay or eta"
        raise InvalidArgument("expires", f"is not after {when}: the item could never run")
    return at


def key_of(key: str | None, unique_for: float | str | timedelta | None) -> tuple[str | None, float]:
    """The unique key and its ``unique_for`` in seconds, checked."""
    if key is None:
        if unique_for is not None:
            raise InvalidArgument("unique_for", "needs a key")
        return None, 0.0
    return _header_key("key", key), 0.0 if unique_for is None else _seconds("unique_for", unique_for)


def _header_key(argument: str, key: Any) -> str:
    """A key that travels in a header (a unique key, a rate key), checked."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument(argument, "must be a non-empty string")
    size = len(key.encode("utf-8", "surrogatepass"))
    if size > MAX_KEY_BYTES:
        raise InvalidArgument(argument, f"is {size} bytes long; at most {MAX_KEY_BYTES}")
    if any(ord(c) < 32 or c == "\x7f" for c in key):
        raise InvalidArgument(argument, "must not hold control characters (it travels in a header)")
    return key


#: What :func:`prepare_batch` has checked already: (site, transport, priority given) -> (site,
#: transport, priority resolved).  A batch repeats a few of each: checked once per distinct value.
Routes = dict[tuple[str, str, int | None], tuple[str, str, int]]


def _body(item: Item) -> tuple[bytes, str]:
    payload = item.payload
    if item.content_type is None and type(payload) in (dict, list):  # JSON, as codec.encode decides
        return _checked("payload", codec.encode_json, payload), JSON_TYPE
    return _checked("payload", codec.encode, payload, item.content_type)


def _route(
    item: Item, default_site: str, priorities: Mapping[str, int] | None, seen: Routes | None
) -> tuple[str, str, int]:
    """Site, transport and priority, checked in that order (the first bad one is named)."""
    site, transport, priority = item.site or default_site, item.transport, item.priority
    # Only plain str and int are remembered: anything else is checked (and refused) every time.
    cacheable = seen is not None and type(site) is str and type(transport) is str
    if cacheable and (priority is None or type(priority) is int):
        known = seen.get((site, transport, priority))  # type: ignore[union-attr]
        if known is not None:
            return known
    else:
        cacheable = False
    route = (
        _checked("site", names.check_site, site),
        _checked("transport", names.check_transport, transport),
        _checked(
            "priority",
            names.check_priority,
            priority if priority is not None or priorities is None else priorities.get(transport),
        ),
    )
    if cacheable:
        seen[(site, transport, priority)] = route  # type: ignore[index]
    return route


def prepare(
    item: Item,
    default_site: str,
    now: float,
    priorities: Mapping[str, int] | None = None,
    seen: Routes | None = None,
) -> Message:
    """``item`` checked and encoded; raises :class:`InvalidArgument` naming what is wrong.
    ``priorities``: a transport's default priority (``[transports.NAME] priority``); ``seen``:
    the routes a batch has checked already (see :data:`Routes`)."""
    body, content_type = _body(item)
    delay = 0.0 if item.delay is None and item.eta is None else delay_of(item.delay, item.eta, now)
    if item.key is None and item.unique_for is None:
        key, unique_for = None, 0.0
    else:
        key, unique_for = key_of(item.key, item.unique_for)
    headers = {} if item.headers is None else _checked("headers", names.check_headers, item.headers)
    if key is not None:
        # The worker reads them here, on every backend: user headers travel everywhere unchanged.
        headers[KEY_HEADER], headers[UNIQUE_FOR_HEADER] = key, f"{unique_for:g}"
    if item.rate_key is not None:
        headers[RATE_KEY_HEADER] = _header_key("rate_key", item.rate_key)
    site, transport, priority = _route(item, default_site, priorities, seen)
    return Message(
        site=site,
        transport=transport,
        body=body,
        content_type=content_type,
        headers=headers,
        priority=priority,
        delay=delay,
        expires_at=None if item.expires is None else expiry_of(item.expires, delay, now),
        key=key,
        unique_for=unique_for,
    )


def prepare_batch(
    items: Any, default_site: str, now: float, limit: int, priorities: Mapping[str, int] | None = None
) -> list[Message]:
    """Every item of a batch prepared, or an error naming the first bad one's index."""
    if isinstance(items, (str, bytes, Item)) or not hasattr(items, "__iter__"):
        raise InvalidArgument("items", f"must be a list of statusq.Item, not {type(items).__name__}")
    batch = list(items)
    if not batch:
        raise InvalidArgument("items", "a batch of none: nothing to enqueue")
    if len(batch) > limit:
        raise InvalidArgument("items", f"{len(batch):,} items; a batch holds at most {limit:,} (send several)")
    messages = []
    seen: Routes = {}
    for index, item in enumerate(batch):
        if not isinstance(item, Item):
            raise InvalidArgument("items", f"must be a statusq.Item, not {type(item).__name__}", index=index)
        try:
            messages.append(prepare(item, default_site, now, priorities, seen))
        except InvalidArgument as exc:
            raise exc.at(index) from None
    return messages
