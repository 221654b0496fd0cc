"""The Prometheus alerting rules we ship (conf/prometheus/), checked by the real promtool: they
load, their unit tests pass, and they name only series that statusq exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.servers import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "conf" / "prometheus" / "statusq-alerts.yml"
RULE_TESTS = ROOT / "conf" / "prometheus" / "statusq-alerts.test.yml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_the_rules_load() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_case_and_not_on_its_look_alike() -> None:
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert alerts and alerts == tested


def test_the_rules_name_only_documented_series() -> None:
    # docs/metrics.md is the contract every exporter follows: a renamed series must break this.
    documented = set(re.findall(r"^\| `(statusq_\w+)`", (ROOT / "docs" / "metrics.md").read_text(), re.M))
    used = set(re.findall(r"\b(statusq_\w+)", RULES.read_text()))
    assert used and used <= documented, sorted(used - documented)
