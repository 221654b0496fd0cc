"""A process that only enqueues never imports a plugin, on every backend: routing (transport ->
group -> destination) comes from the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from tests.conftest import run_cli
from tests.stomp import drain, make_broker, stomp_toml, work_queue_headers

pytestmark = pytest.mark.e2e

BOMB = """
import os, pathlib
pathlib.Path(os.environ["TEST_RECORD"] + ".imported").write_text("the bomb plugin was imported")
raise RuntimeError("this plugin must never be imported by a producer")

def register(api):
    pass
"""
ROUTES = '[transports."alerts.push"]\ngroup = "alerts"\n'


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(request.param)


def test_a_producer_enqueues_without_importing_any_plugin(
    backend: str,
    request: pytest.FixtureRequest,
    write_config: Callable[..., Path],
    plugin_dir: Path,
    record_file: Path,
    tmp_path: Path,
) -> None:
    # Given a plugin that raises (and leaves a mark) when imported, and a route in the config
    (plugin_dir / "bomb.py").write_text(BOMB)
    broker = None
    if backend in ("activemq", "rabbitmq"):
        broker = make_broker(backend)
        config = write_config("sqlite:///unused.sqlite", stomp_toml(broker) + ROUTES, queue={"subsystem": "stomp"})
    else:
        url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
        config = write_config(url, ROUTES)
    imported = Path(f"{record_file}.imported")

    # When an application enqueues items of a default-group and an "alerts"-group transport
    with statusq.connect(config) as qm:
        first = qm.enqueue({"n": 1}, "count", site="a.example")
        second = qm.enqueue({"n": 2}, "alerts.push", site="b.example")

    # Then both are queued, the plugin was never imported...
    assert first and second and first != second
    assert not imported.exists()
    # ...and on a broker each went to its group's destination, as the config routes it
    if broker is not None:
        declared = work_queue_headers(broker)
        main = drain(broker.port, broker.physical(broker.group_queue("a.example")), headers=declared)
        alerts = drain(broker.port, broker.physical(broker.group_queue("b.example", "alerts")), headers=declared)
        assert [h["statusq-transport"] for h, _ in main] == ["count"]
        assert [h["statusq-transport"] for h, _ in alerts] == ["alerts.push"]
    else:
        with statusq.connect(config) as qm:
            ready = {(row.site, row.transport): row.ready for row in qm.backlog()}
        assert ready == {("a.example", "count"): 1, ("b.example", "alerts.push"): 1}
    assert not imported.exists()

    # And a daemon with the same config fails at start, naming the plugin, as before
    result = run_cli("daemon", "--idle-exit", "1", config=config)
    assert result.returncode == 78, result.stderr[-2000:]
    assert "plugin 'bomb' failed to import" in result.stderr
    assert imported.exists()
