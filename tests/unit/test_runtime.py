"""statusq.runtime: what a process builds from its config, lazily."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq import connect, defaults
from statusq.config import Config
from statusq.errors import PluginError
from statusq.queues.inline import InlineQueueManager
from statusq.runtime import Runtime
from tests.unit.fakes import handler_plugin, write_plugin


def test_plugins_are_not_imported_until_needed(tmp_path: Path) -> None:
    # Given a config whose only plugin is broken
    write_plugin(tmp_path / "plugins", "broken", "raise RuntimeError('imported')")
    runtime = Runtime(Config.model_validate({"plugins": {"paths": [str(tmp_path / "plugins")]}}))

    # When nothing asks for the registry, nothing fails; when something does, it is a PluginError
    assert runtime.config.plugins.paths
    with pytest.raises(PluginError, match="'broken' failed to import"):
        _ = runtime.registry


def test_registry_and_sites_are_built_once(tmp_path: Path) -> None:
    runtime = Runtime(Config.model_validate({"sites": {"dir": str(tmp_path)}}))

    assert runtime.registry is runtime.registry
    assert runtime.sites is runtime.sites


def test_connect_reads_statusq_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_plugin(tmp_path / "plugins", "demo", handler_plugin("demo"))
    config = tmp_path / "statusq.toml"
    config.write_text('[queue]\nsubsystem = "inline"\n[plugins]\npaths = ["plugins"]\n')
    monkeypatch.setenv(defaults.CONFIG_ENV, str(config))

    with connect() as queue:
        assert isinstance(queue, InlineQueueManager)
        queue.enqueue({"n": 1}, "demo")
        assert queue.handled == 1
