"""The check's range syntax (monitoring-plugins guidelines) and its status line."""

from __future__ import annotations

import dataclasses
import math

import pytest

from statusq.metrics import nagios
from statusq.metrics.nagios import Range, RangeError, Status
from statusq.metrics.snmp import Totals

QUIET = Totals(
    handled=123,
    retried=7,
    dead_lettered=2,
    errors=9,
    workers_alive=2,
    workers_expected=2,
    in_flight=0,
    backlog_ready=4,
    backlog_delayed=0,
    dead_letters=0,
    last_handled_age=3.0,
    worker_restarts=0,
    dispatch_hung=0,
)


@pytest.mark.parametrize(
    ("spec", "alerting", "quiet"),
    [
        ("10", [-1, 10.5, 11], [0, 5, 10]),  # outside 0..10
        ("10:", [9.9, -3], [10, 1e9]),  # below 10
        ("~:10", [10.1], [-1e9, 10]),  # above 10
        ("10:20", [9, 21], [10, 15, 20]),  # outside 10..20
        ("@10:20", [10, 15, 20], [9, 21]),  # inside 10..20
        ("@5", [0, 5], [-1, 6]),  # inside 0..5
        ("0", [1, -1], [0]),  # anything but zero
    ],
)
def test_ranges_follow_the_guidelines(spec: str, alerting: list[float], quiet: list[float]) -> None:
    parsed = Range.parse(spec)
    assert [v for v in alerting if not parsed.alerts(v)] == []
    assert [v for v in quiet if parsed.alerts(v)] == []


def test_open_ends() -> None:
    assert Range.parse("10:").end == math.inf
    assert Range.parse("~:10").start == -math.inf


@pytest.mark.parametrize("spec", ["", "@", "x", "20:10", "1:2:3", "~", "10:x"])
def test_bad_ranges_are_refused(spec: str) -> None:
    with pytest.raises(RangeError):
        Range.parse(spec)


def test_thresholds_by_name_alias_and_repetition() -> None:
    found = nagios.parse_thresholds(["backlog=10,dead=1:", "age=300", "backlog=20"])
    assert {k: r.text for k, r in found.items()} == {"backlog": "20", "dead_letters": "1:", "last_handled_age": "300"}


@pytest.mark.parametrize("spec", ["backlog", "speed=10", "backlog=abc"])
def test_bad_thresholds_are_refused(spec: str) -> None:
    with pytest.raises(RangeError):
        nagios.parse_thresholds([spec])


def evaluate(totals: Totals = QUIET, warning: str = "", critical: str = "") -> nagios.Result:
    return nagios.evaluate(totals, nagios.parse_thresholds([warning]), nagios.parse_thresholds([critical]))


def test_ok_line_with_perfdata() -> None:
    result = evaluate(warning="backlog=10", critical="backlog=20")
    assert result.status is Status.OK
    text, perf = result.line.split(" | ")
    assert text == (
        "STATUSQ OK - 123 handled, backlog 4, 0 dead letters, 2/2 workers, 0 hung queues, last handled 3s ago"
    )
    assert "'handled'=123c;;;0" in perf.split()
    assert "'backlog'=4;10;20;0" in perf.split()
    assert "'last_handled_age'=3s;;;0" in perf.split()
    assert result.line.count("|") == 1 and "\n" not in result.line


def test_warning_then_critical_names_the_figure() -> None:
    busy = dataclasses.replace(QUIET, backlog_ready=15)
    assert evaluate(busy, "backlog=10", "backlog=20").status is Status.WARNING
    assert evaluate(busy, "backlog=10", "backlog=20").line.startswith("STATUSQ WARNING - backlog 15 (warning 10) - ")
    flooded = dataclasses.replace(QUIET, backlog_ready=25)
    assert evaluate(flooded, "backlog=10", "backlog=20").line.startswith("STATUSQ CRITICAL - backlog 25 (critical 20)")


def test_worst_state_wins_and_every_problem_is_listed() -> None:
    bad = dataclasses.replace(QUIET, dead_letters=3, workers_alive=1, backlog_ready=11)
    result = evaluate(bad, "backlog=10,dead_letters=0", "workers_down=0")
    assert result.status is Status.CRITICAL
    assert "workers down 1 (critical 0)" in result.line
    assert "dead letters 3 (warning 0)" in result.line
    assert "backlog 11 (warning 10)" in result.line


def test_age_is_judged_only_while_items_are_ready() -> None:
    stale = dataclasses.replace(QUIET, last_handled_age=900.0)
    assert evaluate(stale, critical="age=600").status is Status.CRITICAL
    idle = dataclasses.replace(stale, backlog_ready=0)
    result = evaluate(idle, critical="age=600")
    assert result.status is Status.OK
    # still graphed: the perfdata has no holes while the daemon is idle
    assert "'last_handled_age'=900s;;600;0" in result.line


def test_never_handled() -> None:
    fresh = dataclasses.replace(QUIET, last_handled_age=None, handled=0)
    result = evaluate(fresh, critical="age=1")
    assert result.status is Status.OK
    assert "never handled" in result.line
    assert "'last_handled_age'=U;" in result.line


def test_unknown_has_a_reason_and_no_pipe() -> None:
    result = nagios.unknown("cannot read http://x|y")
    assert result.status is Status.UNKNOWN
    assert result.line == "STATUSQ UNKNOWN - cannot read http://x/y"
