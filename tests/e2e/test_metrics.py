"""The metrics of a real daemon: ``/metrics`` (checked by promtool) and statsd datagrams.

The daemon runs as a subprocess with two workers doing real work on the counter plugin: items
handled, retried and dead-lettered, a periodic queue dispatching, a worker SIGKILLed.  Ports are
found free at run time; the endpoint's default 9464 is never used here.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import statusq
from statusq.metrics.scrape import Samples
from statusq.state import RunDir, alive
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.servers import require_tool

pytestmark = pytest.mark.e2e

TICKER_PLUGIN = """
from statusq import QueueHandler

class Tick(QueueHandler):
    def handle(self, item):
        return True

def register(api):
    api.register_handler("tick", Tick)
    api.register_queue("heartbeat", transport="tick", frequency=3600)
"""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class StatsdListener(threading.Thread):
    """A statsd server as far as the test needs one: every line of every datagram, in order."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def count(self, line: str) -> int:
        return sum(1 for seen in list(self.lines) if seen == line)

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self.sock.close()


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    listener.start()
    yield listener
    listener.close()


@pytest.fixture
def daemon_procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
        return text


def samples(port: int) -> Samples:
    return Samples.parse(scrape(port))


def _ready_workers(found: Samples) -> float:
    return found.sum("statusq_workers", state="idle") + found.sum("statusq_workers", state="busy")


def live_workers(config: Path, daemon: subprocess.Popen[str]) -> list[int]:
    run = RunDir(config.parent / "var", daemon.pid)
    return [w.pid for w in run.workers() if alive(w.pid) and w.state in ("idle", "busy")]


def test_a_working_daemon_serves_metrics_that_pass_promtool_and_match_the_work(
    db_url, write_config, plugin_dir, record_file, tmp_path, statsd, daemon_procs
) -> None:
    # Given two sites' items, two of which always fail (handler returns False, handler raises),
    # and a plugin whose periodic queue dispatches one item at start
    promtool = require_tool("promtool")
    (plugin_dir / "ticker.py").write_text(TICKER_PLUGIN)
    port = free_port()
    config = write_config(
        db_url,
        daemon={"spawn_delay": "100ms"},
        # backlog_ttl 0: every scrape asks the database, so a wait sees the rows as they are now
        metrics={
            "enabled": True,
            "listen": f"127.0.0.1:{port}",
            "statsd": f"127.0.0.1:{statsd.port}",
            "backlog_ttl": "0s",
        },
    )
    with statusq.connect(config) as qm:
        for n in range(8):
            qm.enqueue({"n": n}, "count", site="a.example")
        for n in range(8, 12):
            qm.enqueue({"n": n}, "count", site="b.example")
        qm.enqueue({"n": 12, "action": "false"}, "count", site="b.example")
        qm.enqueue({"n": 13, "action": "raise"}, "count", site="a.example")

    # When a daemon with two workers works through them
    daemon = start_daemon(config, "--workers", "2", log=tmp_path / "daemon.log")
    daemon_procs.append(daemon)
    settled = 12 + 2 * 2 + 2  # handled, retried (two attempts each), dead-lettered
    wait_for(lambda: _reachable(port) and samples(port).sum("statusq_items_total", transport="count") == settled,
             what="every attempt counted")  # fmt: skip
    wait_for(lambda: samples(port).sum("statusq_items_total", transport="tick") == 1, what="the dispatched tick")
    # (spawns are spaced by spawn_delay: the first worker may have done all of it while the
    # second was still "starting", a state the assertions below are not about)
    wait_for(lambda: _ready_workers(samples(port)) == 2, what="both workers ready")

    # Then the output passes promtool
    text = scrape(port)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    # And the counters match what the handler recorded, by outcome, site and kind
    found = Samples.parse(text)
    records = read_records(record_file)
    ok = Counter(r["site"] for r in records if r["action"] == "ok")
    assert ok == {"a.example": 8, "b.example": 4}
    for site, count in ok.items():
        assert found.get("statusq_items_total", site=site, transport="count", outcome="handled") == count
    failing = [r for r in records if r["action"] in ("false", "raise")]
    assert found.sum("statusq_items_total", outcome="retried") == sum(1 for r in failing if r["attempt"] < 3) == 4
    assert found.sum("statusq_items_total", outcome="dead_lettered") == sum(1 for r in failing if r["attempt"] == 3)
    assert found.get("statusq_item_errors_total", site="b.example", kind="handler_false") == 3
    assert found.get("statusq_item_errors_total", site="a.example", kind="handler_error") == 3
    assert found.get("statusq_handling_seconds_count", transport="count") == settled
    assert found.get("statusq_latency_seconds_count", transport="count") == 14  # first attempts only
    assert found.get("statusq_enqueued_total", transport="tick") == 1  # by the dispatcher, in a worker
    assert found.get("statusq_enqueued_total", transport="count") is None  # by the test: not the daemon's
    assert (found.get("statusq_last_handled_timestamp_seconds") or 0) > 0
    # And the supervisor's view: two workers, none restarted, the backlog, the periodic queue
    assert _ready_workers(found) == 2
    assert found.get("statusq_workers_expected") == 2
    assert found.get("statusq_up") == 1
    assert found.sum("statusq_worker_restarts_total") == 0
    assert sorted(found.label_values("statusq_worker_rss_bytes", "slot")) == ["1", "2"]
    assert all(s.value > 0 for s in found.select("statusq_worker_rss_bytes"))
    assert found.get("statusq_dead_letters") == 2
    assert found.get("statusq_backlog_items", state="ready") == 0
    assert found.get("statusq_dispatch_items", queue="heartbeat") == 1
    assert found.get("statusq_dispatch_hung", queue="heartbeat") == 0
    assert found.get("statusq_dispatch_last_run_age_seconds", queue="heartbeat") is not None
    # And the cluster view: this daemon, alive, in the shared store's heartbeats
    assert found.get("statusq_cluster_daemons", state="alive") == 1
    assert found.get("statusq_cluster_daemons", state="gone") == 0

    # And statsd received the same events
    wait_for(lambda: statsd.count("statusq.items.handled:1|c") == 13, what="statsd item events")
    assert statsd.count("statusq.items.count.handled:1|c") == 12
    assert statsd.count("statusq.items.retried:1|c") == 4
    assert statsd.count("statusq.items.dead_lettered:1|c") == 2
    assert statsd.count("statusq.errors.handler_false:1|c") == 3
    assert statsd.count("statusq.workers.started:1|c") == 2

    # When a worker that handled items is SIGKILLed
    folder = config.parent / "var" / "run" / str(daemon.pid) / "metrics"
    victim = next(pid for pid in live_workers(config, daemon) if (folder / f"histogram_{pid}.db").exists())
    kinds = {p.name.rsplit("_", 1)[0] for p in folder.glob(f"*_{victim}.db")} - {"gauge_liveall", "gauge_livesum"}
    assert {"counter", "histogram"} <= kinds
    os.kill(victim, signal.SIGKILL)

    # Then the restart is counted, a replacement serves, and no counter went down
    wait_for(lambda: samples(port).get("statusq_worker_restarts_total", cause="crash") == 1, what="restart counted")
    wait_for(lambda: len(live_workers(config, daemon)) == 2 and victim not in live_workers(config, daemon),
             what="a replacement worker")  # fmt: skip
    after = samples(port)
    assert after.sum("statusq_items_total", transport="count") == settled
    assert after.get("statusq_items_total", site="a.example", transport="count", outcome="handled") == 8
    assert after.get("statusq_handling_seconds_count", transport="count") == settled
    # And the dead worker's files were folded into the archive, not left to pile up
    assert not list(folder.glob(f"*_{victim}.db"))
    assert all((folder / f"{kind}_archive.db").exists() for kind in kinds)
    wait_for(lambda: statsd.count("statusq.workers.restarts.crash:1|c") == 1, what="statsd restart event")
    assert statsd.count("statusq.workers.exited.crash:1|c") == 1

    # And the endpoint and its folder go with the daemon
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0
    assert not _reachable(port)
    assert not (config.parent / "var" / "run" / str(daemon.pid)).exists()


def test_a_metrics_port_in_use_is_logged_and_the_daemon_works_on(write_config, record_file, tmp_path) -> None:
    # Given the configured port already taken by another process
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = write_config(
            f"sqlite:///{tmp_path / 'q.sqlite'}", metrics={"enabled": True, "listen": f"127.0.0.1:{port}"}
        )
        with statusq.connect(config) as qm:
            for n in range(3):
                qm.enqueue({"n": n}, "count")

        # When the daemon runs until idle
        done = run_cli("daemon", "--workers", "1", "--idle-exit", "1", config=config)

    # Then it handled everything, exited 0, and said why there is no /metrics
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(r["n"] for r in read_records(record_file)) == [0, 1, 2]
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in done.stderr


def _reachable(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def test_metrics_off_means_no_folder_and_no_port(write_config, record_file, tmp_path) -> None:
    # Given [metrics] enabled = false (the tests' default) and a port nothing listens on
    port = free_port()
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", metrics={"listen": f"127.0.0.1:{port}"})
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1}, "count")
    # When a daemon handles it
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "3", log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: read_records(record_file), what="the item handled")
        run = RunDir(config.parent / "var", daemon.pid)
        # Then it serves no /metrics and keeps no metrics folder
        assert not _reachable(port)
        assert run.path.exists() and not (run.path / "metrics").exists()
    finally:
        code = daemon.wait(timeout=60)
    assert code == 0
