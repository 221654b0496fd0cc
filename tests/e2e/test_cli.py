"""The statusq command's contract with shells and scripts: output and named exit codes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def sqlite_config(write_config, record_file, tmp_path: Path) -> Path:
    path: Path = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    return path


def test_bad_config_key_exits_78_naming_file_key_and_reason(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[queue]\nmax_retries = 3\nmax_retry = 4\n")
    result = run_cli("status", config=config)
    assert result.returncode == os.EX_CONFIG == 78
    assert f"{config}: queue.max_retry: unknown key" in result.stderr


def test_bad_config_value_and_bad_toml_exit_78(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[queue]\nsubsystem = "kafka"\n')
    result = run_cli("status", config=config)
    assert result.returncode == 78
    assert "queue.subsystem" in result.stderr and "'db'" in result.stderr
    config.write_text("[queue\n")
    result = run_cli("status", config=config)
    assert result.returncode == 78 and "not valid TOML" in result.stderr
    result = run_cli("status", config=tmp_path / "missing.toml")
    assert result.returncode == 78 and "file not found" in result.stderr


def test_config_from_environment(sqlite_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATUSQ_CONFIG", str(sqlite_config))
    assert run_cli("enqueue", "count", '{"n": 1}').returncode == 0
    assert json.loads(run_cli("status", "--json").stdout)["totals"]["ready"] == 1


def test_malformed_json_exits_65_and_enqueues_nothing(sqlite_config: Path) -> None:
    result = run_cli("enqueue", "--site", "a.example", "count", '{"n": 1', config=sqlite_config)
    assert result.returncode == os.EX_DATAERR == 65
    assert "PAYLOAD: invalid JSON" in result.stderr
    lines = '{"n": 1}\n{"n": 2\n'
    result = run_cli("enqueue", "--lines", "count", "-", config=sqlite_config, input=lines)
    assert result.returncode == 65 and "stdin line 2: invalid JSON" in result.stderr
    status = json.loads(run_cli("status", "--json", config=sqlite_config).stdout)
    assert status["totals"]["ready"] == 0, "nothing is enqueued when any payload is bad"


def test_hostile_xml_is_refused_at_enqueue(sqlite_config: Path) -> None:
    xxe = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    result = run_cli("enqueue", "--content-type", "application/xml", "count", xxe, config=sqlite_config)
    assert result.returncode == 65 and "entities" in result.stderr
    ok = run_cli("enqueue", "--content-type", "application/xml", "count", "<r>fine</r>", config=sqlite_config)
    assert ok.returncode == 0, ok.stderr


def test_usage_errors_exit_64(sqlite_config: Path) -> None:
    result = run_cli("enqueue", "--priority", "12", "count", "{}", config=sqlite_config)
    assert result.returncode == os.EX_USAGE == 64
    result = run_cli("enqueue", "Not A Transport", "{}", config=sqlite_config)
    assert result.returncode == 65 and "invalid transport" in result.stderr
    result = run_cli("daemon", "--idle-exit", "soon", config=sqlite_config)
    assert result.returncode == 64 and "--idle-exit" in result.stderr
    result = run_cli("daemon", "--group", "nope", config=sqlite_config)
    assert result.returncode == 64 and "no handler registered in group(s) nope" in result.stderr
    result = run_cli("deadletters", "retry", config=sqlite_config)
    assert result.returncode == 64 and "--all" in result.stderr


def test_plugin_failing_at_import_stops_start_up(sqlite_config: Path, plugin_dir: Path) -> None:
    (plugin_dir / "broken.py").write_text("raise RuntimeError('cannot start')\ndef register(api): pass\n")
    result = run_cli("daemon", "--idle-exit", "1", config=sqlite_config)
    assert result.returncode == 78
    assert "plugin 'broken' failed to import" in result.stderr and "cannot start" in result.stderr


def test_duplicate_transport_is_refused_at_start_up_naming_both_plugins(sqlite_config: Path, plugin_dir: Path) -> None:
    (plugin_dir / "copycat.py").write_text(
        "from statusq import QueueHandler\n"
        "class Other(QueueHandler):\n    def handle(self, item): return True\n"
        "def register(api): api.register_handler('count', Other)\n"
    )
    result = run_cli("daemon", "--idle-exit", "1", config=sqlite_config)
    assert result.returncode == 78
    assert "'count' registered twice" in result.stderr
    assert "'copycat'" in result.stderr and "'counter'" in result.stderr


def test_status_table_for_people(sqlite_config: Path) -> None:
    assert run_cli("status", config=sqlite_config).stdout.strip() == "no items queued, none dead"
    run_cli("enqueue", "--site", "a.example", "count", "{}", config=sqlite_config)
    lines = run_cli("status", config=sqlite_config).stdout.splitlines()
    assert lines[0].split() == ["SITE", "TRANSPORT", "READY", "RETRYING", "IN", "FLIGHT", "DEAD"]
    assert lines[1].split() == ["a.example", "count", "1", "0", "0", "0"]


def test_status_shows_removed_sites_and_limits(sqlite_config: Path) -> None:
    with sqlite_config.open("a") as f:
        f.write('\n[transports.count]\nrate_limit = "5/s"\nmax_concurrent = 3\n')
    assert run_cli("control", "remove-site", "gone.example", config=sqlite_config).returncode == 0
    text = run_cli("status", config=sqlite_config).stdout
    assert re.search(r"^gone\.example +\d+s ago$", text, re.M), text
    assert re.search(r"^count +5/s +- +3 +0$", text, re.M), text
    report = json.loads(run_cli("status", "--json", config=sqlite_config).stdout)
    assert set(report["removed_sites"]) == {"gone.example"}
    limit = report["limits"][0]
    assert (limit["transport"], limit["scope"], limit["rate_limit"], limit["running"]) == ("count", "count", "5/s", 0)


def test_shipped_config_is_valid() -> None:
    result = run_cli("status", "--json", config=ROOT / "conf" / "statusq.toml")
    assert result.returncode == 0, result.stderr
