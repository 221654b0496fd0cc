"""What a handler receives, and what a consumer hands the processor before decoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One unit of work as a handler sees it.

    Frozen so a handler cannot change what the retry logic later re-sends.
    """

    id: str
    site: str
    transport: str
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    attempt: int = 1
    enqueued_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    content_type: str = "application/json"
    priority: int | None = None


@dataclass(slots=True)
class Delivery:
    """An item as fetched from a backend: raw body, not yet decoded.

    Decoding happens in the processor, so that an undecodable body is dead-lettered by the same
    code path whatever the backend.  ``token`` is the backend's own handle (a row claim, a
    STOMP ack id) and means nothing to anyone else.
    """

    id: str
    site: str
    transport: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    attempt: int
    enqueued_at: float
    priority: int | None = None
    #: Epoch seconds after which the item is not run but dead-lettered as expired (None: never).
    expires_at: float | None = None
    token: Any = None
    error: str | None = None  # the previous attempt's error, when the backend kept it
    #: The broker says an earlier delivery of this message was not settled (its worker died or
    #: its connection dropped): the listener counts that attempt instead of running the item.
    #: Only message brokers set it; a database claim that expired is counted by the backend.
    redelivered: bool = False


@dataclass(slots=True)
class Message:
    """An item on its way in: checked and encoded by :meth:`QueueManager.enqueue`, then put by the
    backend.  Middleware's ``before_enqueue`` sees it first and may add headers (a trace id, a
    unique key); ``id`` is set by the backend's put (a row id, a STOMP message id)."""

    site: str
    transport: str
    body: bytes
    content_type: str
    headers: dict[str, str]
    priority: int
    id: str = ""
    #: Seconds from now before the item may run (0: at once); held by the backend, never by a worker.
    delay: float = 0.0
    #: Epoch seconds (the manager's clock) after which the item is not run (None: never).
    expires_at: float | None = None
    #: The unique key (statusq.queues.keys), and how long it stays taken after the item succeeded.
    key: str | None = None
    unique_for: float = 0.0


@dataclass(frozen=True, slots=True)
class Item:
    """One item of :meth:`QueueManager.enqueue_many`: the arguments of
    :meth:`~statusq.QueueManager.enqueue`, kept together.

    ``delay``: seconds, a duration (``"5m"``) or a timedelta; ``eta``: an aware :class:`~datetime.datetime`
    (not both); ``expires``: seconds, a duration, a timedelta or an aware datetime after which the item is not
    run but dead-lettered with the reason ``expired``; ``key`` (at most 200 bytes): while an item with it is
    pending, or succeeded within ``unique_for`` (seconds or a duration; default 0), an enqueue with the same
    key adds nothing and returns that item's id; ``rate_key``: the bucket of the transport's
    ``key_rate_limit`` this item counts against (docs/flow-control.md).
    """

    payload: Any
    transport: str
    site: str | None = None
    delay: float | str | timedelta | None = None
    eta: datetime | None = None
    expires: float | str | timedelta | datetime | None = None
    headers: dict[str, str] | None = None
    priority: int | None = None
    content_type: str | None = None
    key: str | None = None
    unique_for: float | str | timedelta | None = None
    #: The item's key for ``[transports.NAME] key_rate_limit`` (e.g. the remote host it pushes
    #: to): it travels as the ``x-statusq-rate-key`` header.
    rate_key: str | None = None
