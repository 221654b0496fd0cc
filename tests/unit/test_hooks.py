"""statusq.hooks: no-op base hooks, and a chain that runs them in order and isolates failures."""

from __future__ import annotations

import logging

import pytest

from statusq.hooks import HookChain, ItemHooks, Outcome, Result
from statusq.item import Delivery
from tests.unit.fakes import make_delivery


class Named(ItemHooks):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def before_item(self, delivery: Delivery) -> None:
        self.log.append(f"before {self.name}")

    def after_item(self, delivery: Delivery, result: Result) -> None:
        self.log.append(f"after {self.name}")


class Broken(ItemHooks):
    def before_item(self, delivery: Delivery) -> None:
        raise RuntimeError("before")

    def after_item(self, delivery: Delivery, result: Result) -> None:
        raise RuntimeError("after")


def test_base_hooks_do_nothing() -> None:
    hooks = ItemHooks()

    hooks.before_item(make_delivery())
    hooks.after_item(make_delivery(), Result(Outcome.DONE))


def test_chain_runs_before_in_order_and_after_in_reverse() -> None:
    log: list[str] = []
    chain = HookChain([Named("a", log), Named("b", log)])

    chain.before_item(make_delivery())
    chain.after_item(make_delivery(), Result(Outcome.DONE))

    assert log == ["before a", "before b", "after b", "after a"]


def test_chain_isolates_and_logs_a_failing_hook(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    chain = HookChain([Named("a", log), Broken(), Named("b", log)])

    with caplog.at_level(logging.ERROR, logger="statusq.hooks"):
        chain.before_item(make_delivery())
        chain.after_item(make_delivery(), Result(Outcome.RETRY, "x", delay=1.0))

    assert log == ["before a", "before b", "after b", "after a"]
    assert [r.getMessage() for r in caplog.records] == [
        "hook Broken.before_item failed; ignored",
        "hook Broken.after_item failed; ignored",
    ]


def test_empty_chain() -> None:
    HookChain().before_item(make_delivery())
