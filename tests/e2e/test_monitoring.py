"""SNMP, nagios and ganglia with the real tools: snmpd + snmpwalk, check_statusq run by path as
nagios runs it, gmond. First each against a stand-in /metrics whose figures the test sets, then
all three against a real daemon doing real work.

Every snmpd and gmond here is private to its test: its own config (built from the shipped one),
a free loopback port, stopped at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

import statusq
from statusq.metrics import snmp
from statusq.metrics.scrape import Samples, ScrapeError, fetch
from statusq.state import RunDir, alive
from tests.conftest import STATUSQ as STATUSQ_CLI
from tests.conftest import start_daemon, wait_for
from tests.monitoring_helpers import (
    ROOT,
    MetricsServer,
    free_port,
    gmond_metrics,
    metrics_text,
    running_gmond,
    running_snmpd,
    smi_dir,
    snmpwalk,
    stop,
)
from tests.servers import require_tool

pytestmark = pytest.mark.e2e

COMMUNITY = "statusq-test-ro"
CHECK = str(ROOT / "scripts" / "check_statusq")
BASE = ".1.3.6.1.3.9464"


@pytest.fixture
def stand_in() -> Iterator[MetricsServer]:
    with MetricsServer() as server:
        yield server


def expected_walk(samples: Samples) -> dict[str, str]:
    """What snmpwalk prints for the agent's view of ``samples`` (less the age, which moves)."""
    types = {"counter64": "Counter64", "gauge": "Gauge32", "integer": "INTEGER"}
    values = snmp.mib_values(samples, time.time())
    return {snmp.format_oid(v.oid): f"{types[v.type]}: {v.value}" for v in values if v.oid[-2:] != (12, 0)}


def without_age(walk: dict[str, str]) -> dict[str, str]:
    return {oid: value for oid, value in walk.items() if oid != f"{BASE}.1.1.12.0"}


def check_plugin(*args: str) -> subprocess.CompletedProcess[str]:
    """As nagios runs a plugin: by absolute path, from /, with no virtualenv in the environment."""
    env = {"PATH": "/usr/bin:/bin"}
    return subprocess.run([CHECK, *args], capture_output=True, text=True, timeout=60, cwd="/", env=env)


# --- each tool against a stand-in /metrics ----------------------------------------------------


def test_the_mib_loads_and_names_the_oids_the_agent_serves() -> None:
    translate = require_tool("snmptranslate")
    names = {
        "statusqUp.0": f"{BASE}.1.1.1.0",
        "statusqItemsHandled.0": f"{BASE}.1.1.2.0",
        "statusqDeadLetters.0": f"{BASE}.1.1.11.0",
        "statusqLastHandledAge.0": f"{BASE}.1.1.12.0",
        "statusqDispatchHung.0": f"{BASE}.1.1.14.0",
        'statusqTransportHandled."xmpp"': f"{BASE}.1.2.1.2.4.120.109.112.112",
        "statusqWorkerRssKBytes.2": f"{BASE}.1.3.1.2.2",
        'statusqDispatchHungNow."cron"': f"{BASE}.1.4.1.4.4.99.114.111.110",
    }
    argv = [translate, "-m", "STATUSQ-MIB", "-M", f"+{ROOT / 'conf'}:{smi_dir()}", "-On"]
    result = subprocess.run([*argv, *(f"STATUSQ-MIB::{n}" for n in names)], capture_output=True, text=True)
    # net-snmp's first run on a machine reports the cache folders it creates: news, not warnings
    warnings = [line for line in result.stderr.splitlines() if not line.startswith("Created directory:")]
    assert (result.returncode, warnings) == (0, [])
    assert result.stdout.split() == list(names.values())
    served = {snmp.format_oid(v.oid) for v in snmp.mib_values(Samples.parse(metrics_text(time.time())), 0)}
    assert set(names.values()) <= served


def test_snmpwalk_returns_the_figures_of_metrics_and_only_statusq_up_when_it_is_down(stand_in, tmp_path) -> None:
    # Given snmpd with the shipped config, its pass_persist helper reading the stand-in
    with running_snmpd(tmp_path, stand_in.url, COMMUNITY) as port:
        # Then a walk of the subtree shows /metrics' figures, with the MIB's types
        walk = snmpwalk(port, COMMUNITY)
        assert without_age(walk) == expected_walk(fetch(stand_in.url))
        assert walk[f"{BASE}.1.1.2.0"] == "Counter64: 164"
        assert walk[f"{BASE}.1.1.12.0"].startswith("INTEGER: ")
        # And another community is refused
        other = subprocess.run(
            ["snmpget", "-v2c", "-c", "public", "-t", "1", "-r", "0", f"127.0.0.1:{port}", f"{BASE}.1.1.1.0"],
            capture_output=True,
            text=True,
            env={"MIBS": "", "PATH": "/usr/bin:/bin"},
        )
        assert other.returncode != 0

        # When /metrics fails, then once the cached scrape is stale, statusqUp is 0 and alone
        stand_in.text = None
        wait_for(lambda: snmpwalk(port, COMMUNITY) == {f"{BASE}.1.1.1.0": "INTEGER: 0"}, 30, "statusqUp = 0")


def test_check_plugin_ok_warning_critical_unknown(stand_in) -> None:
    thresholds = ["-w", "backlog=10,dead_letters=0", "-c", "backlog=20,workers_down=1"]
    now = time.time()
    # OK: backlog 4+2, no dead letter, one worker of three down (under the critical 1)
    stand_in.text = metrics_text(now, ready=4, dead=0)
    ok = check_plugin("-u", stand_in.url, *thresholds)
    assert (ok.returncode, ok.stdout.count("\n")) == (0, 1), ok.stdout + ok.stderr
    assert ok.stdout.startswith("STATUSQ OK - 164 handled, backlog 6, 0 dead letters, 2/3 workers")
    assert "'backlog'=6;10;20;0" in ok.stdout and "'handled'=164c;;;0" in ok.stdout
    # WARNING: a dead letter
    stand_in.text = metrics_text(now, ready=4, dead=1)
    warning = check_plugin("-u", stand_in.url, *thresholds)
    assert warning.returncode == 1
    assert warning.stdout.startswith("STATUSQ WARNING - dead letters 1 (warning 0) - ")
    # CRITICAL: the backlog past 20
    stand_in.text = metrics_text(now, ready=30, dead=1)
    critical = check_plugin("-u", stand_in.url, *thresholds)
    assert critical.returncode == 2
    assert critical.stdout.startswith("STATUSQ CRITICAL - backlog 32 (critical 20); dead letters 1 (warning 0)")
    # -H and -p make the same URL
    port = stand_in.url.split(":")[2].split("/")[0]
    assert check_plugin("-H", "127.0.0.1", "-p", port, *thresholds).returncode == 2
    # UNKNOWN: nothing listening, a bad threshold, a bad option
    unknown = check_plugin("-H", "127.0.0.1", "-p", str(free_port()), "-t", "5")
    assert unknown.returncode == 3
    assert unknown.stdout.startswith("STATUSQ UNKNOWN - cannot read http://127.0.0.1:")
    assert check_plugin("-u", stand_in.url, "-w", "backlog=ten").returncode == 3
    assert check_plugin("--no-such-option").returncode == 3


def test_gmetric_figures_reach_a_real_gmond(stand_in, tmp_path) -> None:
    with running_gmond(tmp_path) as (udp, tcp):
        sent = subprocess.run(
            [*STATUSQ_CLI, "gmetric", "--url", stand_in.url, "--gmond", f"127.0.0.1:{udp}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        wait_for(lambda: "statusq_handled_xmpp" in gmond_metrics(tcp), 30, "gmond to hold the figures")
        held = gmond_metrics(tcp)
        assert held["statusq_handled"]["VAL"] == "164"
        assert (held["statusq_handled"]["SLOPE"], held["statusq_handled"]["GROUP"]) == ("positive", "statusq")
        assert held["statusq_backlog_ready"]["VAL"] == "4"
        assert held["statusq_backlog_ready"]["TYPE"] == "uint32"
        assert held["statusq_dead_lettered_xmpp"]["VAL"] == "2"
        assert held["statusq_up"]["VAL"] == "1"

        # When the daemon is down: statusq_up 0, exit 69 for cron to mail
        stand_in.text = None
        down = subprocess.run(
            [*STATUSQ_CLI, "gmetric", "--url", stand_in.url, "--gmond", f"127.0.0.1:{udp}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == os.EX_UNAVAILABLE
        wait_for(lambda: gmond_metrics(tcp)["statusq_up"]["VAL"] == "0", 30, "statusq_up = 0 in gmond")


# --- all three against a real daemon ----------------------------------------------------------


@pytest.fixture
def daemon_procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        stop(proc)


def workers(config: Path, daemon: subprocess.Popen[str]) -> list[int]:
    return [w.pid for w in RunDir(config.parent / "var", daemon.pid).workers() if alive(w.pid)]


def reachable(url: str) -> bool:
    try:
        fetch(url, timeout=2)
    except ScrapeError:
        return False
    return True


def test_snmp_nagios_and_ganglia_follow_a_real_daemon(write_config, record_file, tmp_path, daemon_procs) -> None:
    # Given a one-worker daemon with its metrics endpoint on a free port, and items to handle:
    # five that succeed, one that fails every time (retried twice, then a dead letter)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    config = write_config(
        f"sqlite:///{tmp_path / 'queue.sqlite'}",
        metrics={"enabled": True, "listen": f"127.0.0.1:{port}", "backlog_ttl": 0},
    )
    with statusq.connect(config) as qm:
        for n in range(5):
            qm.enqueue({"n": n}, "count", site="a.example")
        qm.enqueue({"n": 5, "action": "false"}, "count", site="b.example")
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    daemon_procs.append(daemon)
    wait_for(lambda: reachable(url) and fetch(url).get("statusq_dead_letters") == 1, what="the work done")
    wait_for(lambda: fetch(url).sum("statusq_items_total") == 5 + 2 + 1, what="every attempt counted")

    with ExitStack() as stack:
        snmp_port = stack.enter_context(running_snmpd(tmp_path, url, COMMUNITY))
        udp, tcp = stack.enter_context(running_gmond(tmp_path))

        # Then snmpwalk shows the figures of /metrics
        before = fetch(url)
        walk = snmpwalk(snmp_port, COMMUNITY)
        assert without_age(walk) == without_rss(expected_walk(before), walk)
        assert walk[f"{BASE}.1.1.2.0"] == "Counter64: 5"  # handled
        assert walk[f"{BASE}.1.1.3.0"] == "Counter64: 2"  # retried
        assert walk[f"{BASE}.1.1.11.0"] == "Gauge32: 1"  # dead letters
        assert walk[f"{BASE}.1.2.1.4.5.99.111.117.110.116"] == "Counter64: 1"  # count: dead-lettered
        assert walk[f"{BASE}.1.3.1.2.1"].startswith("Gauge32: ")  # slot 1's RSS

        # And gmond receives the same figures
        sent = subprocess.run([*STATUSQ_CLI, "gmetric", "--url", url, "--gmond", f"127.0.0.1:{udp}"], timeout=60)
        assert sent.returncode == 0
        wait_for(lambda: "statusq_handled_count" in gmond_metrics(tcp), 30, "gmond to hold the figures")
        held = gmond_metrics(tcp)
        assert [held[n]["VAL"] for n in ("statusq_handled", "statusq_dead_letters", "statusq_workers")] == [
            "5",
            "1",
            "1",
        ]

        # And the check is OK with thresholds not crossed, WARNING for the dead letter
        assert check_plugin("-u", url, "-c", "workers_down=0,backlog=2").returncode == 0
        warning = check_plugin("-u", url, "-w", "dead_letters=0", "-c", "workers_down=0,backlog=2")
        assert warning.returncode == 1, warning.stdout
        assert warning.stdout.startswith("STATUSQ WARNING - dead letters 1 (warning 0)")

        # When the worker is stuck (stopped) and items pile up, the check is CRITICAL
        [worker] = workers(config, daemon)
        os.kill(worker, signal.SIGSTOP)
        try:
            with statusq.connect(config) as qm:
                for n in range(10, 13):
                    qm.enqueue({"n": n}, "count", site="a.example")
            wait_for(lambda: fetch(url).get("statusq_backlog_items", state="ready") == 3, what="the backlog")
            critical = check_plugin("-u", url, "-w", "dead_letters=0", "-c", "workers_down=0,backlog=2")
            assert critical.returncode == 2, critical.stdout
            assert critical.stdout.startswith("STATUSQ CRITICAL - backlog 3 (critical 2); dead letters 1")
            walked = snmpwalk(snmp_port, COMMUNITY)
            assert walked[f"{BASE}.1.1.9.0"] == "Gauge32: 3"
        finally:
            os.kill(worker, signal.SIGCONT)

        # When it goes on, the backlog is worked off: back to WARNING (the dead letter stays)
        wait_for(lambda: fetch(url).sum("statusq_items_total", outcome="handled") == 8, what="the backlog handled")
        wait_for(lambda: fetch(url).get("statusq_backlog_items", state="ready") == 0, what="an empty backlog")
        assert check_plugin("-u", url, "-w", "dead_letters=0", "-c", "backlog=2").returncode == 1

        # When the daemon stops: UNKNOWN, and SNMP says statusqUp = 0
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
        unknown = check_plugin("-u", url, "-c", "backlog=2")
        assert unknown.returncode == 3, unknown.stdout
        assert unknown.stdout.startswith(f"STATUSQ UNKNOWN - cannot read {url}")
        wait_for(lambda: snmpwalk(snmp_port, COMMUNITY) == {f"{BASE}.1.1.1.0": "INTEGER: 0"}, 30, "statusqUp = 0")


def without_rss(expected: dict[str, str], walk: dict[str, str]) -> dict[str, str]:
    """Resident memory moves between two reads: take the walk's, having checked the slots match."""
    rss = f"{BASE}.1.3.1.2."
    assert {o for o in expected if o.startswith(rss)} == {o for o in walk if o.startswith(rss)}
    return {oid: walk[oid] if oid.startswith(rss) else value for oid, value in expected.items()}
