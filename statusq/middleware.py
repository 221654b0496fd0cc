"""The one way to hook into statusq: :class:`Middleware`, a class of typed no-op hooks.

Metrics, statsd, the state file, the process title, dispatcher accounting and plugins' own
concerns all subclass it and override only the hooks they need.  :class:`MiddlewareChain` runs
the ``before_*`` hooks in order and the ``after_*`` hooks in reverse, so a middleware that wraps
others (a timer) sees them nested, and isolates each call: a hook that raises is logged and
never keeps an item from being settled or an enqueue from returning.

The chain keeps, per hook, only the middleware that override it: the item hooks run twice for
every item, and most middleware watch one or two events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from statusq.errors import StatusqError
from statusq.item import Delivery, Message
from statusq.outcome import Result

log = logging.getLogger(__name__)


class Middleware:
    """No-op hooks; override the ones you need.  Add one with ``api.add_middleware(m)`` from a
    plugin's ``register(api)``; it then runs in every worker and in every queue manager the
    process opens through statusq."""

    def before_enqueue(self, message: Message) -> None:
        """An item is about to be put on its queue (checked and encoded; ``message.id`` unset).
        Raising a :class:`~statusq.errors.StatusqError` refuses the enqueue on purpose (the caller
        gets it); any other exception is logged and ignored, like every other hook's."""

    def after_enqueue(self, message: Message) -> None:
        """The backend accepted the item; ``message.id`` is its id."""

    def before_item(self, delivery: Delivery) -> None:
        """A delivery was fetched and is about to be processed."""

    def before_resend(self, delivery: Delivery, result: Result) -> None:
        """The delivery did not succeed and is about to be written back (a retry, a hold, a dead
        letter that may be requeued): headers set here travel with it to its next attempt.  Only
        on that path, so a success pays nothing for it (tracing links attempts this way)."""

    def after_item(self, delivery: Delivery, result: Result) -> None:
        """The delivery was settled (acked, retried or dead-lettered) with ``result``."""

    def after_control(self, command: str, result: str) -> None:
        """A control message was ``"applied"`` or ``"refused"`` (``command`` is from a closed set,
        "unknown" for anything else)."""

    def after_worker_boot(self) -> None:
        """The worker's loop is built and about to take items."""

    def before_worker_shutdown(self) -> None:
        """The worker's loop ended (stop, idle exit, memory limit); its managers stop next."""


HOOKS = (
    "before_enqueue",
    "after_enqueue",
    "before_item",
    "before_resend",
    "after_item",
    "after_control",
    "after_worker_boot",
    "before_worker_shutdown",
)


def _owner(call: Callable[..., None]) -> str:
    return type(getattr(call, "__self__", call)).__name__


class MiddlewareChain:
    """Runs a list of middleware; see the module's docstring for order and isolation."""

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self.middleware: list[Middleware] = []
        self._calls: dict[str, list[Callable[..., None]]] = {name: [] for name in HOOKS}
        for one in middleware:
            self.add(one)

    def add(self, middleware: Middleware) -> None:
        if not isinstance(middleware, Middleware):
            raise TypeError(f"middleware must subclass statusq.Middleware, not {type(middleware).__name__}")
        self.middleware.append(middleware)
        for name in HOOKS:
            if getattr(type(middleware), name) is not getattr(Middleware, name):
                calls = self._calls[name]
                bound = getattr(middleware, name)
                # after_* run in reverse order of addition: the newest is called first.
                calls.insert(0, bound) if name.startswith("after_") else calls.append(bound)

    def __len__(self) -> int:
        return len(self.middleware)

    def _emit(self, name: str, *args: Any, refusals: type[Exception] | None = None) -> None:
        for call in self._calls[name]:
            try:
                call(*args)
            except Exception as exc:
                if refusals is not None and isinstance(exc, refusals):
                    raise  # a refusal on purpose: the caller's to see
                log.exception("middleware %s.%s failed; ignored", _owner(call), name)

    def before_enqueue(self, message: Message) -> None:
        self._emit("before_enqueue", message, refusals=StatusqError)

    def after_enqueue(self, message: Message) -> None:
        self._emit("after_enqueue", message)

    def before_item(self, delivery: Delivery) -> None:
        self._emit("before_item", delivery)

    def before_resend(self, delivery: Delivery, result: Result) -> None:
        self._emit("before_resend", delivery, result)

    def after_item(self, delivery: Delivery, result: Result) -> None:
        self._emit("after_item", delivery, result)

    def after_control(self, command: str, result: str) -> None:
        self._emit("after_control", command, result)

    def after_worker_boot(self) -> None:
        self._emit("after_worker_boot")

    def before_worker_shutdown(self) -> None:
        self._emit("before_worker_shutdown")
