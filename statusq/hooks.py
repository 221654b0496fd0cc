"""Hooks around each item, for the concerns that watch work without doing it.

Metrics, process titles and logging of outcomes subclass :class:`ItemHooks`; the processor runs
them through :class:`HookChain`, which logs and isolates a failing hook so that monitoring can
never make an item fail.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from statusq.item import Delivery

log = logging.getLogger(__name__)


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


class ItemHooks:
    """No-op hooks; override the ones you need."""

    def before_item(self, delivery: Delivery) -> None:
        """A delivery was fetched and is about to be processed."""

    def after_item(self, delivery: Delivery, result: Result) -> None:
        """The delivery was settled (acked, retried or dead-lettered)."""


class HookChain(ItemHooks):
    def __init__(self, hooks: Sequence[ItemHooks] = ()) -> None:
        self.hooks = list(hooks)

    def before_item(self, delivery: Delivery) -> None:
        for hook in self.hooks:
            try:
                hook.before_item(delivery)
            except Exception:
                log.exception("hook %s.before_item failed; ignored", type(hook).__name__)

    def after_item(self, delivery: Delivery, result: Result) -> None:
        # Reverse order, so a hook that wraps others (a timer, a title) sees them nested.
        for hook in reversed(self.hooks):
            try:
                hook.after_item(delivery, result)
            except Exception:
                log.exception("hook %s.after_item failed; ignored", type(hook).__name__)
