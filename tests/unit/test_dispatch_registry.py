"""Declaring periodic queues: ``api.register_queue`` through real plugins, and every mistake it
refuses at start-up, naming the plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from statusq import plugins
from statusq.config import Config
from statusq.errors import PluginError
from statusq.periodic import QueueRegistry, WorkItem, as_work_item, declare
from tests.unit.fakes import write_plugin

QUEUES_PLUGIN = """
    from statusq import QueueHandler

    class Handler(QueueHandler):
        def handle(self, item):
            return True

    def register(api):
        api.register_handler("sitecron", Handler)
        api.register_queue("cron", kind="batch", transport="sitecron", members=lambda: ["a", "b"],
                           frequency="1h", min_runs=6, max_runs=12)
        api.register_queue("tasks", transport="sitecron", source=lambda n: [], items=20)
        api.register_queue("tick", transport="sitecron")
    """


def load(tmp_path: Path, **sources: str) -> QueueRegistry:
    for name, source in sources.items():
        write_plugin(tmp_path / "plugins", name, source)
    config = Config.model_validate({"plugins": {"paths": [str(tmp_path / "plugins")]}})
    return plugins.load_plugins(config).queues


def test_a_plugin_declares_queues_with_aegirs_defaults(tmp_path: Path) -> None:
    specs = load(tmp_path, hosting=QUEUES_PLUGIN)
    assert specs.names() == ["cron", "tasks", "tick"]
    cron, tasks, tick = specs
    assert (cron.kind, cron.frequency, cron.min_runs, cron.max_runs, cron.threshold) == ("batch", 3600, 6, 12, 100)
    assert (cron.plugin, cron.items, cron.timeout) == ("hosting", 0, 600)
    assert (tasks.kind, tasks.frequency, tasks.items) == ("serial", 300, 20)
    assert (tick.items, tick.source) == (5, None), "a serial queue without a source is a plain timer"


def test_one_registry_per_handler_registry(tmp_path: Path) -> None:
    specs = load(tmp_path, hosting=QUEUES_PLUGIN)
    assert len(plugins.load_plugins(Config()).queues) == 0
    assert len(specs) == 3


def test_a_queue_declared_twice_stops_start_up_naming_both_plugins(tmp_path: Path) -> None:
    other = """
        def register(api):
            api.register_queue("cron", transport="sitecron")
        """
    with pytest.raises(PluginError, match="queue 'cron' registered twice: by plugin 'hosting' and by plugin 'zz'"):
        load(tmp_path, hosting=QUEUES_PLUGIN, zz=other)


def test_a_queue_whose_transport_nobody_handles_is_refused(tmp_path: Path) -> None:
    lonely = """
        def register(api):
            api.register_queue("orphan", transport="nobody")
        """
    with pytest.raises(PluginError, match="queue 'orphan' sends to transport 'nobody', which no plugin handles"):
        load(tmp_path, lonely=lonely)


def test_an_unknown_option_names_the_plugin(tmp_path: Path) -> None:
    typo = """
        def register(api):
            api.register_queue("x", transport="t", frequncy="1h")
        """
    with pytest.raises(PluginError, match=r"plugin 'typo' failed in register\(\): TypeError: .*frequncy"):
        load(tmp_path, typo=typo)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "Cron!"}, "invalid name"),
        ({"kind": "parallel"}, "kind must be 'serial' or 'batch'"),
        ({"transport": "Bad Name"}, "invalid transport"),
        ({"frequency": "soon"}, "frequency: 'soon' is not a duration"),
        ({"frequency": 0}, "frequency must be longer than 0"),
        ({"timeout": "0s"}, "timeout must be longer than 0"),
        ({"items": 0}, "items must be an integer >= 1"),
        ({"items": True}, "items must be an integer >= 1"),
        ({"priority": 10}, "priority must be 0 to 9"),
        ({"kind": "batch"}, "a batch queue needs members="),
        ({"kind": "batch", "members": list, "source": list}, "source= is for serial queues"),
        ({"members": list}, "members= is for batch queues"),
        ({"source": "tasks"}, "source must be callable"),
        ({"kind": "batch", "members": list, "min_runs": 7, "max_runs": 6}, r"min_runs \(7\) is more than max_runs"),
        ({"kind": "batch", "members": list, "threshold": 0}, "threshold must be an integer >= 1"),
    ],
)
def test_declaration_mistakes(options: dict[str, Any], message: str) -> None:
    arguments = {"name": "q", "transport": "t", "plugin": "p", **options}
    with pytest.raises(PluginError, match=message) as caught:
        declare(**arguments)
    assert caught.value.key == "plugin p"


def test_sources_may_yield_keys_or_work_items_and_bad_ones_are_refused() -> None:
    assert as_work_item("site.example") == WorkItem("site.example")
    item = WorkItem("k", site="a.example", payload={"x": 1})
    assert as_work_item(item) is item
    with pytest.raises(TypeError, match="str or WorkItem, not int"):
        as_work_item(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 255 characters"):
        as_work_item("")
    with pytest.raises(ValueError, match="invalid site"):
        as_work_item(WorkItem("k", site="no spaces"))


def test_the_dispatcher_section_of_the_config(tmp_path: Path) -> None:
    from statusq.config import load_config
    from statusq.errors import ConfigError

    path = tmp_path / "statusq.toml"
    path.write_text('[dispatcher]\ntick = "250ms"\nclaim_expiry = "2m"\nchunk = 500\n')
    section = load_config(path).dispatcher
    assert (section.enabled, section.tick, section.claim_expiry, section.chunk) == (True, 0.25, 120.0, 500)
    path.write_text("[dispatcher]\ntick = 0\n")
    with pytest.raises(ConfigError, match=r"statusq.toml: dispatcher.tick: .*greater than 0"):
        load_config(path)
    path.write_text("[dispatcher]\nticks = 1\n")
    with pytest.raises(ConfigError, match=r"dispatcher\.ticks: unknown key"):
        load_config(path)


def test_a_worker_gets_a_dispatcher_only_when_a_queue_is_declared_and_it_is_enabled(tmp_path: Path) -> None:
    from statusq.dispatcher import dispatch_hooks, dispatcher_manager
    from statusq.dispatcher.manager import DispatcherManager
    from statusq.runtime import Runtime

    write_plugin(tmp_path / "plugins", "hosting", QUEUES_PLUGIN)
    base = {"queue": {"db_url": f"sqlite:///{tmp_path / 'q.sqlite'}"}}
    with_queues = Runtime(Config.model_validate({**base, "plugins": {"paths": [str(tmp_path / "plugins")]}}))
    without = Runtime(Config.model_validate(base))
    with with_queues.queue_manager() as qm:
        assert isinstance(dispatcher_manager(with_queues.config, with_queues.registry.queues, qm), DispatcherManager)
        assert dispatcher_manager(without.config, without.registry.queues, qm) is None
        off = Runtime(
            Config.model_validate(
                {**base, "plugins": {"paths": [str(tmp_path / "plugins")]}, "dispatcher": {"enabled": False}}
            )
        )
        assert dispatcher_manager(off.config, off.registry.queues, qm) is None
    assert dispatch_hooks(without.config).db_url == without.config.db_url, "every worker records, dispatching or not"
