"""How an item's attempt ended: the processor decides it, the backend settles it, and
middleware (metrics, accounting, the state file) is told of it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"


class Failure(enum.StrEnum):
    """Why an attempt failed, in words an operator can graph and alert on (a closed set, so a
    metric labelled with it stays small whatever the handlers raise)."""

    BAD_ITEM = "bad_item"  # undecodable body, no transport: no attempt can ever succeed
    NO_HANDLER = "no_handler"
    HANDLER_ERROR = "handler_error"  # the handler raised
    HANDLER_FALSE = "handler_false"  # the handler returned False: "try again later"
    TIME_LIMIT = "time_limit"  # interrupted past [daemon] time_limit
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
