"""The bundled periodic-queue plugins: per-site cron (batch) and the spool folder (serial)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from statusq import plugins
from statusq.config import Config, SiteConfig
from statusq.item import QueueItem
from statusq.sites import site_context

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path) -> Config:
    return Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {"db_url": f"sqlite:///{tmp_path / 'q.sqlite'}"},
            "sites": {"dir": str(tmp_path / "sites")},
            "plugins": {"paths": [str(ROOT / "plugins")], "enabled": ["sitecron", "spool"]},
        }
    )


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Config, Any, Any]:
    cfg = config(tmp_path)
    handlers = plugins.load_plugins(cfg)
    return cfg, handlers, handlers.queues


def item(payload: Any, site: str = "a.example") -> QueueItem:
    return QueueItem(id="1", site=site, transport="t", payload=payload)


def test_both_register_their_queues(loaded: tuple[Config, Any, Any]) -> None:
    _, handlers, specs = loaded
    cron, spool = specs.get("cron"), specs.get("spool")
    assert cron is not None and spool is not None
    assert (cron.kind, cron.frequency, cron.min_runs, cron.max_runs, cron.transport) == (
        "batch",
        3600,
        6,
        12,
        "sitecron",
    )
    assert (spool.kind, spool.items, spool.transport) == ("serial", 50, "spool")
    assert handlers.get("sitecron") is not None and handlers.get("spool") is not None


def test_sitecron_members_are_the_enabled_sites(loaded: tuple[Config, Any, Any], tmp_path: Path) -> None:
    _, _, specs = loaded
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "a.example.toml").write_text("")
    (sites / "b.example.toml").write_text("enabled = false\n")
    (sites / "c.example.toml").write_text("broken = [\n")
    members = list(specs.get("cron").members())
    assert [(m.key, m.site) for m in members] == [("a.example", "a.example")]


@pytest.mark.parametrize(
    ("settings", "outcome"),
    [
        ({}, True),
        ({"command": ["true"]}, True),
        ({"command": ["false"]}, RuntimeError),
        ({"url": "file:///etc/passwd"}, ValueError),
    ],
)
def test_sitecron_runs_what_the_site_says(
    loaded: tuple[Config, Any, Any], settings: dict[str, Any], outcome: Any
) -> None:
    _, handlers, _ = loaded
    handler = handlers.handler("sitecron")
    site = SiteConfig(name="a.example", settings={"sitecron": settings})
    with site_context(site):
        if outcome is True:
            assert handler.handle(item({"key": "a.example"})) is True
        else:
            with pytest.raises(outcome):
                handler.handle(item({"key": "a.example"}))


def test_spool_takes_the_oldest_files_and_the_handler_moves_them_onto_their_queues(
    loaded: tuple[Config, Any, Any],
) -> None:
    cfg, handlers, specs = loaded
    spool = Path(cfg.var_dir) / "spool"
    assert list(specs.get("spool").source(5)) == [], "no folder yet: nothing to do"
    spool.mkdir(parents=True)
    for n in (3, 1, 2):
        (spool / f"000{n}.json").write_text(
            json.dumps({"transport": "sitecron", "site": "a.example", "payload": {"n": n}})
        )
    (spool / "0000.json").write_text("{not json")
    (spool / "0004.tmp").write_text("{}")

    picked = list(specs.get("spool").source(3))
    assert [w.key for w in picked] == ["0000.json", "0001.json", "0002.json"]

    handler = handlers.handler("spool")
    for work in picked:
        assert handler.handle(item(work.payload)) is True
    assert sorted(p.name for p in spool.iterdir()) == ["0003.json", "0004.tmp", "bad"]
    assert (spool / "bad" / "0000.json").exists(), "a file retrying cannot fix is parked, not lost"
    assert handler.handle(item(picked[1].payload)) is True, "a file handled already is not an error"
    with handler.queue_manager() as qm:
        backlog = qm.backlog()
    assert [(row.site, row.transport, row.ready) for row in backlog] == [("a.example", "sitecron", 2)]
