"""The backlog series of a daemon on STOMP: ActiveMQ's statistics plugin, RabbitMQ's absence.

ActiveMQ here is a private broker on its own ports (61661 STOMP, 61662 OpenWire), started from
``scripts/servers/activemq.sh`` so it has the config that script writes now (the shared broker
on 61613 may be older), and killed when the module is done.

Waiting items without a clock: one worker with a prefetch of 1 takes a "gate" item whose handler
waits for a file; the broker dispatches nothing more to it until that item is acked, so every
other item waits, and the count is exact.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from tests.conftest import read_records, start_daemon, wait_for
from tests.e2e.test_metrics import _reachable, daemon_procs, free_port, samples, scrape
from tests.servers import require_tool
from tests.stomp import Broker, make_broker, private_activemq, stomp_toml

pytestmark = pytest.mark.e2e

__all__ = ["daemon_procs"]  # the fixture, imported for use here

STOMP_PORT, OPENWIRE_PORT = 61661, 61662

GATE_PLUGIN = """
import os, time
from pathlib import Path
from statusq import QueueHandler

class Gate(QueueHandler):
    def handle(self, item):
        Path(item.payload["entered"]).touch()
        deadline = time.monotonic() + 15  # below the tests' time_limit: a forgotten gate ends
        while not os.path.exists(item.payload["open"]) and time.monotonic() < deadline:
            time.sleep(0.02)
        return True

def register(api):
    api.register_handler("gate", Gate)
"""


@pytest.fixture(scope="module")
def activemq_server() -> Iterator[int]:
    for broker in private_activemq("metrics", STOMP_PORT, OPENWIRE_PORT):
        broker.start()
        yield STOMP_PORT


def stomp_config(write_config: Callable[..., Path], plugin_dir: Path, broker: Broker, port: int) -> Path:
    (plugin_dir / "gate.py").write_text(GATE_PLUGIN)
    return write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, prefetch=1),
        queue={"subsystem": "stomp", "max_retries": 0},
        # backlog_ttl 0: every scrape asks the broker, so a wait sees the queues as they are now
        metrics={"enabled": True, "listen": f"127.0.0.1:{port}", "backlog_ttl": "0s"},
    )


@pytest.mark.parametrize("groups", [[], ["--group", "main"]], ids=["all-groups", "named-groups"])
def test_activemq_queue_depths_and_dead_letters_are_served(
    activemq_server: int, groups: list[str], write_config, plugin_dir, record_file, tmp_path, daemon_procs
) -> None:
    # Given a gate item, then four items that succeed and one that fails (no retries), queued
    # before the daemon starts: all-groups asks the broker by wildcard, named-groups by name
    promtool = require_tool("promtool")
    broker = make_broker("activemq", activemq_server)
    port = free_port()
    config = stomp_config(write_config, plugin_dir, broker, port)
    entered, gate = tmp_path / "entered", tmp_path / "open"
    with statusq.connect(config) as qm:
        qm.enqueue({"entered": str(entered), "open": str(gate)}, "gate")
        for n in range(4):
            qm.enqueue({"n": n}, "count")
        qm.enqueue({"n": 4, "action": "raise"}, "count")
        qm.enqueue({"n": 5}, "count", delay=3600)  # waits in the shared store (the test's own)

    # When one worker holds the gate item
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", *groups, log=log)
    daemon_procs.append(daemon)
    wait_for(entered.exists, what="the gate item in hand")
    wait_for(lambda: _reachable(port) and samples(port).get("statusq_dead_letters") is not None,
             what="the broker's figures served")  # fmt: skip

    # Then the five behind it are ready, the one in hand is in flight, nothing is dead yet, and
    # the delayed one is counted where it waits, in the shared store (not in the broker's queues)
    waiting = samples(port)
    assert waiting.get("statusq_backlog_items", state="ready") == 5
    assert waiting.get("statusq_backlog_items", state="in_flight") == 1
    assert waiting.get("statusq_backlog_items", state="delayed") == 1
    assert waiting.get("statusq_dead_letters") == 0

    # When the gate opens and the worker gets through everything
    gate.touch()
    wait_for(lambda: len(read_records(record_file)) == 5, what="the five count items handled")
    wait_for(lambda: samples(port).get("statusq_dead_letters") == 1, what="the failed item dead-lettered")

    # Then nothing is left waiting or in hand, and the output passes promtool
    text = scrape(port)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    wait_for(lambda: samples(port).get("statusq_backlog_items", state="ready") == 0, what="no item ready")
    assert samples(port).get("statusq_backlog_items", state="in_flight") == 0
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    # And the supervisor asked every time without a failure, and its log is not one line per ask
    text = log.read_text()
    assert "ActiveMQ statistics left out" not in text
    assert "metrics-statistics connected" not in text


def test_on_rabbitmq_the_backlog_series_are_absent_and_nothing_is_logged(
    write_config, plugin_dir, tmp_path, daemon_procs
) -> None:
    # Given a daemon on RabbitMQ (no statistics over STOMP) with /metrics on
    broker = make_broker("rabbitmq")
    port = free_port()
    config = stomp_config(write_config, plugin_dir, broker, port)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", log=log)
    daemon_procs.append(daemon)

    # When it has been scraped after its state file was written (the groups are known)
    wait_for(lambda: _reachable(port) and samples(port).get("statusq_workers_expected") == 1,
             what="the supervisor's state served")  # fmt: skip
    text = scrape(port)

    # Then the rest is served, the backlog series not at all, and the log has no complaint
    assert "statusq_up 1.0" in text
    assert "statusq_backlog_items" not in text and "statusq_dead_letters" not in text
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    assert "left out" not in log.read_text()
    assert "broker error on metrics-statistics" not in log.read_text()
