"""statusq.middleware: no-op base hooks, and a chain that runs them in order, the after hooks in
reverse, and isolates a failing hook (except a deliberate refusal of an enqueue)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from statusq.errors import DataError
from statusq.item import Delivery, Message
from statusq.middleware import HOOKS, Middleware, MiddlewareChain
from statusq.outcome import Outcome, Result
from tests.unit.fakes import make_delivery


def message() -> Message:
    return Message("a.example", "echo", b"{}", "application/json", {}, 4)


class Named(Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def before_item(self, delivery: Delivery) -> None:
        self.log.append(f"before {self.name}")

    def after_item(self, delivery: Delivery, result: Result) -> None:
        self.log.append(f"after {self.name}")

    def before_enqueue(self, message: Message) -> None:
        self.log.append(f"before_enqueue {self.name}")

    def after_enqueue(self, message: Message) -> None:
        self.log.append(f"after_enqueue {self.name}")


class Broken(Middleware):
    def _raise(self, *args: Any) -> None:
        raise RuntimeError("broken")

    before_item = after_item = before_enqueue = after_enqueue = after_control = _raise
    after_worker_boot = before_worker_shutdown = _raise


def test_base_hooks_do_nothing() -> None:
    middleware = Middleware()

    middleware.before_item(make_delivery())
    middleware.after_item(make_delivery(), Result(Outcome.DONE))
    middleware.before_enqueue(message())
    middleware.after_enqueue(message())
    middleware.after_control("reload", "applied")
    middleware.after_worker_boot()
    middleware.before_worker_shutdown()


def test_befores_run_in_order_and_afters_in_reverse() -> None:
    log: list[str] = []
    chain = MiddlewareChain([Named("a", log), Named("b", log)])

    chain.before_enqueue(message())
    chain.after_enqueue(message())
    chain.before_item(make_delivery())
    chain.after_item(make_delivery(), Result(Outcome.DONE))

    assert log == [
        "before_enqueue a",
        "before_enqueue b",
        "after_enqueue b",
        "after_enqueue a",
        "before a",
        "before b",
        "after b",
        "after a",
    ]


def test_a_failing_hook_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    chain = MiddlewareChain([Named("a", log), Broken(), Named("b", log)])

    with caplog.at_level(logging.ERROR, logger="statusq.middleware"):
        chain.before_item(make_delivery())
        chain.after_item(make_delivery(), Result(Outcome.RETRY, "x", delay=1.0))
        chain.before_enqueue(message())
        chain.after_control("reload", "applied")
        chain.after_worker_boot()
        chain.before_worker_shutdown()

    assert log == ["before a", "before b", "after b", "after a", "before_enqueue a", "before_enqueue b"]
    assert [r.getMessage() for r in caplog.records] == [
        "middleware Broken.before_item failed; ignored",
        "middleware Broken.after_item failed; ignored",
        "middleware Broken.before_enqueue failed; ignored",
        "middleware Broken.after_control failed; ignored",
        "middleware Broken.after_worker_boot failed; ignored",
        "middleware Broken.before_worker_shutdown failed; ignored",
    ]


def test_a_statusq_error_in_before_enqueue_refuses_the_enqueue() -> None:
    class Refuse(Middleware):
        def before_enqueue(self, message: Message) -> None:
            raise DataError("duplicate key")

    with pytest.raises(DataError, match="duplicate key"):
        MiddlewareChain([Refuse()]).before_enqueue(message())


def test_only_overridden_hooks_are_called() -> None:
    # Every hook of a middleware that overrides none stays out of the chain's lists: the item
    # hooks run twice per item, and most middleware watch one event.
    chain = MiddlewareChain([Middleware(), Named("a", [])])

    assert {name: len(chain._calls[name]) for name in HOOKS} == {
        "before_enqueue": 1,
        "after_enqueue": 1,
        "before_item": 1,
        "before_resend": 0,
        "after_item": 1,
        "after_control": 0,
        "after_worker_boot": 0,
        "before_worker_shutdown": 0,
    }


def test_anything_but_middleware_is_refused() -> None:
    with pytest.raises(TypeError, match=r"must subclass statusq\.Middleware"):
        MiddlewareChain().add(object())  # type: ignore[arg-type]


def test_empty_chain() -> None:
    MiddlewareChain().before_item(make_delivery())
