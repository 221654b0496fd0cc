"""statusq.registry: mistakes in what plugins register are errors at registration time."""

from __future__ import annotations

from typing import Any

import pytest

from statusq.errors import PluginError
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.registry import HandlerRegistry


class Echo(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        return True


class Other(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        return True


@pytest.fixture
def registry() -> HandlerRegistry:
    return HandlerRegistry()


def test_register_and_get(registry: HandlerRegistry) -> None:
    registry.register("echo", Echo, group="main", plugin="demo")

    registration = registry.get("echo")

    assert registration is not None
    assert (registration.transport, registration.handler_class) == ("echo", Echo)
    assert (registration.group, registration.plugin) == ("main", "demo")
    assert registry.get("nope") is None
    assert len(registry) == 1


def test_duplicate_transport_names_both_plugins(registry: HandlerRegistry) -> None:
    registry.register("echo", Echo, group="main", plugin="first")

    with pytest.raises(PluginError) as caught:
        registry.register("echo", Other, group="main", plugin="second")

    message = str(caught.value)
    assert "'echo'" in message
    assert "'first'" in message and "Echo" in message
    assert "'second'" in message and "Other" in message
    assert registry.get("echo").handler_class is Echo  # type: ignore[union-attr]


@pytest.mark.parametrize("handler_class", [object, int, Echo(), lambda item: True, "Echo"])
def test_a_non_queue_handler_class_is_refused(registry: HandlerRegistry, handler_class: Any) -> None:
    with pytest.raises(PluginError, match="must be a QueueHandler subclass") as caught:
        registry.register("echo", handler_class, group="main", plugin="demo")

    assert caught.value.key == "plugin demo"
    assert len(registry) == 0


@pytest.mark.parametrize("name", ["", "Echo", "has space", "-lead", ".lead", "x" * 65, "a/b", "é", 5, None])
def test_bad_transport_names_are_refused(registry: HandlerRegistry, name: Any) -> None:
    with pytest.raises(PluginError, match="transport name") as caught:
        registry.register(name, Echo, group="main", plugin="demo")

    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("group", ["", "Main", "two words", 1])
def test_bad_group_names_are_refused(registry: HandlerRegistry, group: Any) -> None:
    with pytest.raises(PluginError, match="group name"):
        registry.register("echo", Echo, group=group, plugin="demo")


@pytest.mark.parametrize("name", ["a", "echo", "feed.fetch", "x_1-2", "0", "x" * 64])
def test_good_names_are_accepted(registry: HandlerRegistry, name: str) -> None:
    registry.register(name, Echo, group=name, plugin="demo")

    assert registry.transports() == {name}


def test_handler_is_one_instance_per_transport(registry: HandlerRegistry) -> None:
    registry.register("a", Echo, group="main", plugin="demo")
    registry.register("b", Echo, group="main", plugin="demo")

    first = registry.handler("a")

    assert isinstance(first, Echo)
    assert registry.handler("a") is first
    assert registry.handler("b") is not first
    assert registry.handler("unknown") is None


def test_handler_is_created_on_first_use_only(registry: HandlerRegistry) -> None:
    created: list[str] = []

    class Counting(QueueHandler):
        def __init__(self) -> None:
            created.append("x")

    registry.register("a", Counting, group="main", plugin="demo")
    assert created == []

    registry.handler("a")
    registry.handler("a")

    assert created == ["x"]


def test_transports_filtered_by_group(registry: HandlerRegistry) -> None:
    registry.register("a", Echo, group="main", plugin="demo")
    registry.register("b", Echo, group="slow", plugin="demo")
    registry.register("c", Echo, group="slow", plugin="demo")

    assert registry.transports() == {"a", "b", "c"}
    assert registry.transports({"slow"}) == {"b", "c"}
    assert registry.transports({"main", "slow"}) == {"a", "b", "c"}
    assert registry.transports({"nope"}) == set()
    assert registry.transports(set()) == set()
    assert registry.groups() == {"main", "slow"}


def test_base_handler_must_be_overridden() -> None:
    item = QueueItem(id="1", site="s", transport="t", payload=None)

    with pytest.raises(NotImplementedError, match="Echoless must implement handle"):
        type("Echoless", (QueueHandler,), {})().handle(item)
