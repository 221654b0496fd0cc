"""statusq.worker: which items a worker subscribes to, and the master it assembles."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq.config import Config
from statusq.io.listener import QueueListener
from statusq.queues.base import Subscription
from statusq.runtime import Runtime
from statusq.worker import build_master, subscription_for
from tests.unit.fakes import handler_plugin, write_plugin


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "fast", handler_plugin("fast.a"))
    write_plugin(plugins, "slow", handler_plugin("slow.b", group="slow"))
    return Runtime(
        Config.model_validate(
            {
                "queue": {"subsystem": "inline"},
                "plugins": {"paths": [str(plugins)]},
                "sites": {"dir": str(tmp_path / "sites")},
            }
        )
    )


def test_no_groups_means_everything(runtime: Runtime) -> None:
    assert subscription_for(runtime, None) == Subscription()


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

    assert isinstance(master.managers[0], QueueListener)
    assert master.run() == 0  # nothing queued inline: idle at once
