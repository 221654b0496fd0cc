"""How an item's attempt ended: the processor decides it, the backend settles it, and
middleware (metrics, accounting, the state file) is told of it.

A handler chooses an outcome by returning (True/None: done, False: retry later) or by raising
:class:`Retry` or :class:`Reject`.  Those two live here, not in :mod:`statusq.errors`: they are
a handler's answer, not a failure of statusq, so they are not :class:`~statusq.errors.StatusqError`
(an application's ``except StatusqError`` around statusq calls must never catch them, and the
CLI's exit codes mean nothing for them).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from statusq.units import parse_duration


class Retry(Exception):
    """Raised by a handler: try this item again, after ``delay`` (seconds or ``"30s"``; None:
    the transport's backoff).  The attempt counts: once they are used up the item is
    dead-lettered by the usual rule, with ``reason`` as its error."""

    def __init__(self, reason: str = "", *, delay: float | str | None = None) -> None:
        self.reason = str(reason)
        self.delay = None if delay is None else parse_duration(delay)
        super().__init__(self.reason)


class Reject(Exception):
    """Raised by a handler: this item can never succeed; dead-letter it now, without retries,
    with ``reason`` in the dead letter's error (header ``statusq-error`` on a broker)."""

    def __init__(self, reason: str = "") -> None:
        self.reason = str(reason)
        super().__init__(self.reason)


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    #: Not run and not counted: held by a pause, offered again after ``Result.delay``.
    HOLD = "hold"
    #: Not run, and never will be: cancelled, purged, or a duplicate delivery of a keyed item
    #: that already succeeded.  Acked as DONE is, but not counted as handled.
    DROPPED = "dropped"


class Failure(enum.StrEnum):
    """Why an attempt failed, in words an operator can graph and alert on (a closed set, so a
    metric labelled with it stays small whatever the handlers raise)."""

    BAD_ITEM = "bad_item"  # undecodable body, no transport: no attempt can ever succeed
    NO_HANDLER = "no_handler"
    HANDLER_ERROR = "handler_error"  # the handler raised
    HANDLER_FALSE = "handler_false"  # the handler returned False: "try again later"
    TIME_LIMIT = "time_limit"  # interrupted past its transport's time_limit
    HANDLER_RETRY = "handler_retry"  # the handler raised statusq.Retry
    HANDLER_REJECT = "handler_reject"  # the handler raised statusq.Reject: dead at once
    SITE_UNAVAILABLE = "site_unavailable"  # disabled, removed, broken config, unknown
    EXPIRED = "expired"  # not started before its enqueue's ``expires``: not run
    #: A bug of ours, or an earlier attempt that never finished (its worker died or was killed).
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    #: Why it was not done (the handler's error, "returned False", a decode error...).
    reason: str | None = None
    #: Seconds spent in the handler (0 when no handler ran).
    duration: float = 0.0
    #: The retry delay chosen, for RETRY.
    delay: float = 0.0
    #: Why it failed, for RETRY and DEAD (None for DONE).
    kind: Failure | None = None

    @property
    def error(self) -> BaseException | None:
        """What the handler raised, for error reporters and traces (None: it raised nothing)."""
        return None


@dataclass(frozen=True, slots=True)
class Raised(Result):
    """The result of a handler that raised: it keeps the exception (with its traceback).  A
    subclass, not a field of :class:`Result`: a field would cost every item that succeeds an
    argument more in the frozen ``__init__``, and only failures need it."""

    raised: BaseException | None = field(default=None, compare=False, repr=False)

    @property
    def error(self) -> BaseException | None:
        return self.raised


@dataclass(frozen=True, slots=True)
class Held(Result):
    """HOLD by a rate limit or a concurrency cap (statusq.flow): ``limit`` says which kind
    (``transport_rate``, ``site_rate``, ``key_rate``, ``concurrency``), a closed set a metric may
    be labelled with.  A subclass for the reason :class:`Raised` is one."""

    limit: str = ""
