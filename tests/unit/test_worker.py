"""statusq.worker: which items a worker subscribes to, and the master it assembles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config
from statusq.control import ControlManager
from statusq.errors import ConfigError
from statusq.io.listener import QueueListener
from statusq.runtime import Runtime
from statusq.worker import build_master, check_groups, subscription_for
from tests.unit.fakes import handler_plugin, write_plugin


def make_runtime(tmp_path: Path, **extra: Any) -> Runtime:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "fast", handler_plugin("fast.a"))
    write_plugin(plugins, "slow", handler_plugin("slow.b", group="slow"))
    return Runtime(
        Config.model_validate(
            {
                "queue": {"subsystem": "inline"},
                "plugins": {"paths": [str(plugins)]},
                "sites": {"dir": str(tmp_path / "sites")},
                **extra,
            }
        )
    )


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return make_runtime(tmp_path, transports={"slow.b": {"group": "slow"}})


def test_no_groups_means_everything(runtime: Runtime) -> None:
    subscription = subscription_for(runtime, None)

    assert (subscription.transports, subscription.sites, subscription.catch_unknown) == (None, None, False)
    # A broker subscribes to the destinations of every group a handler is registered in.
    assert subscription.groups == frozenset({"main", "slow"})


def test_a_handler_in_a_group_the_config_does_not_route_to_stops_the_worker(tmp_path: Path) -> None:
    # Given a plugin registering slow.b in group "slow", and a config that does not say so
    runtime = make_runtime(tmp_path)

    # Then the worker refuses to start, naming the key that fixes it (producers read the
    # config, not the plugins, and would send slow.b's items to the default group)
    with pytest.raises(ConfigError, match=r'transports\.slow\.b\.group.*\[transports\.slow\.b\] group = "slow"'):
        check_groups(runtime, None)


def test_routes_that_agree_with_the_plugins_pass(runtime: Runtime) -> None:
    check_groups(runtime, {"slow"})


def test_the_default_group_also_catches_unknown_transports(runtime: Runtime) -> None:
    subscription = subscription_for(runtime, {"main"})

    assert subscription.transports == frozenset({"fast.a"})
    assert subscription.catch_unknown is True
    assert subscription.known_transports == frozenset({"fast.a", "slow.b"})


def test_another_group_takes_only_its_transports(runtime: Runtime) -> None:
    subscription = subscription_for(runtime, {"slow"})

    assert subscription.transports == frozenset({"slow.b"})
    assert subscription.catch_unknown is False


def test_build_master_runs_the_queue_listener(runtime: Runtime) -> None:
    master = build_master(runtime, idle_exit=0)

    # The control manager goes first, so a command is applied before the listener's next item
    assert [type(m) for m in master.managers[:2]] == [ControlManager, QueueListener]
    assert master.run() == 0  # nothing queued inline: idle at once
