"""statusq.plugins: discovery from folders and entry points, `enabled`, and import/register errors."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from statusq import plugins
from statusq.config import Config
from statusq.errors import PluginError
from statusq.handler import QueueHandler
from statusq.registry import HandlerRegistry
from tests.unit.fakes import handler_plugin, write_plugin


class _Handler(QueueHandler):
    pass


@dataclass
class FakeEntryPoint:
    """What importlib.metadata.entry_points() yields, reduced to what discovery reads."""

    name: str
    value: str
    target: Any

    def load(self) -> Any:
        if isinstance(self.target, BaseException):
            raise self.target
        return self.target


def use_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: FakeEntryPoint) -> None:
    def entry_points(*, group: str) -> list[FakeEntryPoint]:
        assert group == plugins.ENTRY_POINT_GROUP
        return list(eps)

    monkeypatch.setattr(plugins, "entry_points", entry_points)


def config_for(*paths: Path, enabled: list[str] | None = None) -> Config:
    return Config.model_validate({"plugins": {"paths": [str(p) for p in paths], "enabled": enabled}})


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "plugins"
    path.mkdir()
    return path


def test_module_and_package_plugins_are_found_and_registered(folder: Path) -> None:
    # Given a module plugin and a package plugin whose handler lives in a submodule
    write_plugin(folder, "alpha", handler_plugin("alpha.work"))
    write_plugin(
        folder,
        "beta",
        """
        from .handlers import Beta

        def register(api):
            api.register_handler("beta.work", Beta, group="slow")
        """,
        package=True,
    )
    write_plugin(
        folder / "beta",
        "handlers",
        """
        from statusq import QueueHandler

        class Beta(QueueHandler):
            def handle(self, item):
                return True
        """,
    )

    # When the plugins are loaded
    registry = plugins.load_plugins(config_for(folder))

    # Then both registered, each under its own plugin name and group
    assert registry.transports() == {"alpha.work", "beta.work"}
    assert registry.get("alpha.work").plugin == "alpha"  # type: ignore[union-attr]
    assert registry.get("alpha.work").group == "main"  # type: ignore[union-attr]
    assert registry.get("beta.work").plugin == "beta"  # type: ignore[union-attr]
    assert registry.get("beta.work").group == "slow"  # type: ignore[union-attr]


def test_plugins_are_imported_under_a_private_name(folder: Path) -> None:
    write_plugin(folder, "json", handler_plugin("shadow"))  # must not shadow the stdlib json

    plugins.load_plugins(config_for(folder))

    assert "statusq_plugin_json" in sys.modules
    assert sys.modules["json"].__file__ != str(folder / "json.py")


def test_private_hidden_and_non_plugin_entries_are_skipped(folder: Path) -> None:
    # Given files that would fail if imported, but are not plugins
    write_plugin(folder, "real", handler_plugin("real"))
    write_plugin(folder, "_helper", "raise RuntimeError('imported _helper')")
    write_plugin(folder, ".hidden", "raise RuntimeError('imported .hidden')")
    write_plugin(folder, "_private_pkg", "raise RuntimeError('imported package')", package=True)
    (folder / "notes.txt").write_text("not a plugin")
    (folder / "data").mkdir()  # a folder without __init__.py
    (folder / "data" / "x.py").write_text("raise RuntimeError('imported data/x')")

    sources = plugins.discover(config_for(folder))

    assert [s.name for s in sources] == ["real"]
    assert len(plugins.load_plugins(config_for(folder))) == 1


def test_enabled_restricts_and_disabled_plugins_are_never_imported(folder: Path) -> None:
    write_plugin(folder, "alpha", handler_plugin("alpha"))
    write_plugin(folder, "gamma", handler_plugin("gamma"))
    write_plugin(folder, "broken", "raise RuntimeError('must not be imported')")

    registry = plugins.load_plugins(config_for(folder, enabled=["gamma"]))

    assert registry.transports() == {"gamma"}


def test_enabled_plugins_load_in_the_order_given(folder: Path) -> None:
    write_plugin(folder, "alpha", handler_plugin("alpha"))
    write_plugin(folder, "gamma", handler_plugin("gamma"))

    sources = plugins.discover(config_for(folder, enabled=["gamma", "alpha"]))

    assert [s.name for s in sources] == ["gamma", "alpha"]


def test_missing_enabled_plugin_is_named(folder: Path) -> None:
    write_plugin(folder, "alpha", handler_plugin("alpha"))

    with pytest.raises(PluginError) as caught:
        plugins.load_plugins(config_for(folder, enabled=["alpha", "ghost"]))

    assert caught.value.key == "plugins.enabled"
    assert "ghost" in caught.value.reason
    assert "found: alpha" in caught.value.reason


def test_missing_plugin_folder_is_a_plugin_error(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="does not exist") as caught:
        plugins.load_plugins(config_for(tmp_path / "absent"))

    assert caught.value.key == "plugins.paths"
    assert caught.value.file == str(tmp_path / "absent")


def test_plugin_whose_import_raises_is_named(folder: Path) -> None:
    write_plugin(folder, "broken", "import no_such_module_xyz\n")

    with pytest.raises(PluginError) as caught:
        plugins.load_plugins(config_for(folder))

    message = str(caught.value)
    assert "'broken'" in message
    assert "failed to import" in message
    assert "no_such_module_xyz" in message
    assert str(folder / "broken.py") in message
    assert "statusq_plugin_broken" not in sys.modules  # a half-imported module is not kept


def test_plugin_with_a_syntax_error_is_named(folder: Path) -> None:
    write_plugin(folder, "typo", "def register(api)\n    pass\n")

    with pytest.raises(PluginError, match=r"(?s)'typo' failed to import.*SyntaxError"):
        plugins.load_plugins(config_for(folder))


def test_plugin_without_register_is_named(folder: Path) -> None:
    write_plugin(folder, "lazy", "REGISTER = None\n")

    with pytest.raises(PluginError, match=r"plugin 'lazy' .* has no register\(api\) function"):
        plugins.load_plugins(config_for(folder))


def test_plugin_whose_register_raises_is_named(folder: Path) -> None:
    write_plugin(folder, "grumpy", "def register(api):\n    raise RuntimeError('nope')\n")

    with pytest.raises(PluginError, match=r"plugin 'grumpy' failed in register\(\): RuntimeError: nope"):
        plugins.load_plugins(config_for(folder))


def test_registration_errors_pass_through_unchanged(folder: Path) -> None:
    write_plugin(folder, "one", handler_plugin("shared", cls="One"))
    write_plugin(folder, "two", handler_plugin("shared", cls="Two"))

    with pytest.raises(PluginError, match=r"registered twice: by plugin 'one' .* by plugin 'two'"):
        plugins.load_plugins(config_for(folder))


def test_plugin_api_gives_the_config_and_default_group(folder: Path) -> None:
    write_plugin(
        folder,
        "curious",
        """
        from statusq import QueueHandler
        SEEN = []

        class H(QueueHandler):
            pass

        def register(api):
            SEEN.append((api.plugin, api.config))
            api.register_handler("curious", H)
        """,
    )
    config = config_for(folder)

    registry = plugins.load_plugins(config)

    seen = sys.modules["statusq_plugin_curious"].SEEN
    assert seen == [("curious", config)]
    assert registry.get("curious").group == "main"  # type: ignore[union-attr]


def test_load_plugins_fills_a_given_registry(folder: Path) -> None:
    write_plugin(folder, "alpha", handler_plugin("alpha"))
    registry = HandlerRegistry()

    assert plugins.load_plugins(config_for(folder), registry) is registry
    assert registry.transports() == {"alpha"}


# --- entry points -----------------------------------------------------------------------------


def test_entry_point_register_function_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    use_entry_points(monkeypatch, FakeEntryPoint("ext", "ext_pkg:register", lambda api: calls.append(api.plugin)))

    plugins.load_plugins(config_for())

    assert calls == ["ext"]


def test_entry_point_module_with_register_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    module = ModuleType("ext_pkg")
    module.register = lambda api: api.register_handler("ext.work", _Handler)  # type: ignore[attr-defined]
    use_entry_points(monkeypatch, FakeEntryPoint("ext", "ext_pkg", module))

    registry = plugins.load_plugins(config_for())

    assert registry.get("ext.work").plugin == "ext"  # type: ignore[union-attr]


def test_entry_point_that_fails_to_load_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    use_entry_points(monkeypatch, FakeEntryPoint("ext", "ext_pkg:register", ImportError("no ext_pkg")))

    with pytest.raises(PluginError) as caught:
        plugins.load_plugins(config_for())

    assert "'ext' failed to import (entry point ext = ext_pkg:register)" in str(caught.value)
    assert "ImportError: no ext_pkg" in str(caught.value)


def test_same_name_in_folder_and_entry_point_is_an_error(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a folder plugin and an installed entry point both called "alpha"
    write_plugin(folder, "alpha", handler_plugin("alpha"))
    use_entry_points(monkeypatch, FakeEntryPoint("alpha", "alpha_pkg:register", lambda api: None))

    # When plugins are discovered
    with pytest.raises(PluginError) as caught:
        plugins.discover(config_for(folder))

    # Then the error names the plugin and both origins
    message = str(caught.value)
    assert "two plugins named 'alpha'" in message
    assert str(folder / "alpha.py") in message
    assert "entry point alpha = alpha_pkg:register" in message


def test_same_name_twice_in_folders_is_an_error(tmp_path: Path) -> None:
    write_plugin(tmp_path / "a", "alpha", handler_plugin("one"))
    write_plugin(tmp_path / "b", "alpha", handler_plugin("two"), package=True)

    with pytest.raises(PluginError, match="two plugins named 'alpha'"):
        plugins.discover(config_for(tmp_path / "a", tmp_path / "b"))


MIDDLEWARE_PLUGIN = """
    import statusq

    class Seen(statusq.Middleware):
        def __init__(self):
            self.enqueued = []

        def after_enqueue(self, message):
            self.enqueued.append((message.site, message.transport, message.id))

    SEEN = Seen()

    def register(api):
        api.add_middleware(SEEN)
    """


def test_a_plugin_adds_middleware_that_every_queue_manager_of_the_process_runs(tmp_path: Path) -> None:
    # Given a plugin that adds an enqueue-watching middleware, and a runtime on SQLite
    from statusq.runtime import Runtime

    folder = tmp_path / "plugins"
    write_plugin(folder, "watch", MIDDLEWARE_PLUGIN)
    config = Config.model_validate(
        {"plugins": {"paths": [str(folder)]}, "queue": {"db_url": f"sqlite:///{tmp_path / 'q.sqlite'}"}}
    )
    runtime = Runtime(config)

    # When the plugins are loaded and an item is enqueued through the runtime's manager
    assert len(runtime.registry) == 0
    with runtime.queue_manager() as qm:
        item_id = qm.enqueue({}, "echo", site="a.example")

    # Then the plugin's middleware saw it, with the id the backend gave it
    (seen,) = runtime.middleware.middleware
    assert seen.enqueued == [("a.example", "echo", item_id)]  # type: ignore[attr-defined]


def test_adding_something_that_is_not_middleware_is_a_plugin_error(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    write_plugin(folder, "wrong", "def register(api):\n    api.add_middleware(object())\n")

    with pytest.raises(PluginError, match=r"plugin wrong.*must subclass statusq\.Middleware"):
        plugins.load_plugins(Config.model_validate({"plugins": {"paths": [str(folder)]}}))
