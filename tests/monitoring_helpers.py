"""What the SNMP, nagios and ganglia tests share: a /metrics text as the daemon serves it, a
server for it, free ports, and the real snmpd and gmond started privately on them."""

from __future__ import annotations

import contextlib
import glob
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import IN_CI, require_tool

ROOT = Path(__file__).resolve().parent.parent
STATUSQ = [sys.executable, "-m", "statusq.cli.main"]


def metrics_text(now: float, *, ready: int = 4, dead: int = 1, hung: int = 0, last_handled: float = 3.0) -> str:
    """A scrape as docs/metrics.md specifies it: two transports, two workers, one periodic queue."""
    stamp = now - last_handled if last_handled >= 0 else 0
    return f"""\
# HELP statusq_items_total Items settled.
# TYPE statusq_items_total counter
statusq_items_total{{site="example.org",transport="distrib",outcome="handled"}} 120.0
statusq_items_total{{site="example.net",transport="distrib",outcome="handled"}} 3.0
statusq_items_total{{site="example.org",transport="distrib",outcome="retried"}} 7.0
statusq_items_total{{site="example.org",transport="xmpp",outcome="handled"}} 41.0
statusq_items_total{{site="example.org",transport="xmpp",outcome="dead_lettered"}} 2.0
# HELP statusq_item_errors_total Why an attempt failed.
# TYPE statusq_item_errors_total counter
statusq_item_errors_total{{site="example.org",transport="distrib",kind="handler_false"}} 5.0
statusq_item_errors_total{{site="example.org",transport="xmpp",kind="handler_error"}} 4.0
# HELP statusq_handling_seconds Time in the handler.
# TYPE statusq_handling_seconds histogram
statusq_handling_seconds_bucket{{transport="distrib",le="0.1"}} 100.0
statusq_handling_seconds_bucket{{transport="distrib",le="+Inf"}} 130.0
statusq_handling_seconds_count{{transport="distrib"}} 130.0
statusq_handling_seconds_sum{{transport="distrib"}} 12.5
# HELP statusq_last_handled_timestamp_seconds When an item was last handled.
# TYPE statusq_last_handled_timestamp_seconds gauge
statusq_last_handled_timestamp_seconds {stamp}
# HELP statusq_up 1 while the supervisor serves.
# TYPE statusq_up gauge
statusq_up 1.0
# HELP statusq_workers Worker processes by state.
# TYPE statusq_workers gauge
statusq_workers{{state="starting"}} 0.0
statusq_workers{{state="idle"}} 1.0
statusq_workers{{state="busy"}} 1.0
statusq_workers{{state="exiting"}} 0.0
# HELP statusq_workers_expected Workers the supervisor keeps running.
# TYPE statusq_workers_expected gauge
statusq_workers_expected 3.0
# HELP statusq_items_in_flight Items being handled now.
# TYPE statusq_items_in_flight gauge
statusq_items_in_flight 1.0
# HELP statusq_worker_rss_bytes Resident memory per worker slot.
# TYPE statusq_worker_rss_bytes gauge
statusq_worker_rss_bytes{{slot="1"}} 52428800.0
statusq_worker_rss_bytes{{slot="2"}} 61865984.0
# HELP statusq_worker_restarts_total Workers replaced.
# TYPE statusq_worker_restarts_total counter
statusq_worker_restarts_total{{cause="crash"}} 1.0
statusq_worker_restarts_total{{cause="memory"}} 2.0
# HELP statusq_backlog_items Items in the queue backend.
# TYPE statusq_backlog_items gauge
statusq_backlog_items{{state="ready"}} {ready}
statusq_backlog_items{{state="delayed"}} 2.0
statusq_backlog_items{{state="in_flight"}} 1.0
# HELP statusq_dead_letters Items in the dead letters.
# TYPE statusq_dead_letters gauge
statusq_dead_letters {dead}
# HELP statusq_dispatch_last_run_age_seconds Seconds since a queue last dispatched.
# TYPE statusq_dispatch_last_run_age_seconds gauge
statusq_dispatch_last_run_age_seconds{{queue="cron"}} 42.5
# HELP statusq_dispatch_running 1 while a run is in progress.
# TYPE statusq_dispatch_running gauge
statusq_dispatch_running{{queue="cron"}} 1.0
# HELP statusq_dispatch_hung 1 when a run is past its timeout.
# TYPE statusq_dispatch_hung gauge
statusq_dispatch_hung{{queue="cron"}} {hung}
"""


class MetricsServer:
    """A stand-in /metrics: serves ``text`` (changeable), or 503 when ``text`` is None."""

    def __init__(self) -> None:
        self.text: str | None = metrics_text(time.time())
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.text
                if body is None:
                    self.send_error(503)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetricsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def smi_dir() -> str:
    """Where the SMIv2 base modules STATUSQ-MIB imports from are (see conf/STATUSQ-MIB.txt)."""
    candidates = ["/usr/share/snmp/mibs/ietf", *sorted(glob.glob("/usr/lib/erlang/lib/snmp-*/mibs"))]
    for folder in candidates:
        if glob.glob(f"{folder}/SNMPv2-SMI*"):
            return folder
    message = "no SNMPv2-SMI module: install snmp-mibs-downloader or erlang-snmp"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


UP_OID = ".1.3.6.1.3.9464.1.1.1.0"


def snmpd_conf(port: int, community: str, command: str) -> str:
    """The shipped conf/snmpd.conf with this test's port, community and helper command."""
    text = (ROOT / "conf" / "snmpd.conf").read_text()
    replaced = text.replace("udp:127.0.0.1:1161", f"udp:127.0.0.1:{port}").replace("CHANGE-ME-statusq", community)
    lines = [
        f"pass_persist .1.3.6.1.3.9464 {command}" if line.startswith("pass_persist ") else line
        for line in replaced.splitlines()
    ]
    assert replaced != text and any(line.startswith("pass_persist") for line in lines), "conf/snmpd.conf changed shape"
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_snmpd(tmp: Path, url: str, community: str) -> Iterator[int]:
    """A private snmpd on a free loopback port serving STATUSQ-MIB through ``statusq snmp``."""
    snmpd = require_tool("snmpd")
    require_tool("snmpget")
    port = free_port(socket.SOCK_DGRAM)
    command = " ".join([*STATUSQ, "snmp", "--url", url, "--cache", "0.5"])
    conf = tmp / "snmpd.conf"
    conf.write_text(snmpd_conf(port, community, command))
    persistent = tmp / "snmp-persist"
    persistent.mkdir(exist_ok=True)
    log = tmp / "snmpd.log"
    # -C: no system config (/etc/snmp); MIBS empty: the agent needs no MIB and would print errors
    # for the IETF ones Debian does not ship.
    env = {"PATH": "/usr/bin:/bin", "SNMP_PERSISTENT_DIR": str(persistent), "MIBS": "", "HOME": str(tmp)}
    argv = [snmpd, "-f", "-Lf", str(log), "-C", "-c", str(conf), "-p", str(tmp / "snmpd.pid")]
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _snmp_answers(port, community) or process.poll() is not None, 30, "snmpd to answer")
        if process.poll() is not None:
            raise AssertionError(f"snmpd exited {process.returncode}: {log.read_text()}")
        yield port
    finally:
        stop(process)


def _snmp_answers(port: int, community: str) -> bool:
    # statusqUp.0: snmpd answers and has started our pass_persist helper (the community's view
    # is our subtree only, so snmpd's own objects would not say it).
    argv = ["snmpget", "-v2c", "-c", community, "-t", "1", "-r", "0", "-On", f"127.0.0.1:{port}", UP_OID]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10, env={"MIBS": "", "PATH": "/usr/bin:/bin"})
    return result.returncode == 0 and "INTEGER" in result.stdout


def snmpwalk(port: int, community: str, oid: str = ".1.3.6.1.3.9464") -> dict[str, str]:
    """The real snmpwalk, numeric OIDs: ``{oid: "Type: value"}``."""
    argv = [require_tool("snmpwalk"), "-v2c", "-c", community, "-On", "-t", "5", f"127.0.0.1:{port}", oid]
    env = {"MIBS": "", "PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    found = {}
    for line in result.stdout.splitlines():
        oid_text, _, value = line.partition(" = ")
        if not value.startswith("No more variables"):  # the walk ran past our subtree: the end
            found[oid_text] = value
    return found


def gmond_conf(udp: int, tcp: int) -> str:
    """The shipped conf/gmond-statusq.conf, in the foreground as root, on this test's ports."""
    text = (ROOT / "conf" / "gmond-statusq.conf").read_text()
    assert text.count("port = 8649") == 2, "conf/gmond-statusq.conf changed shape"
    text = text.replace("port = 8649", f"port = {udp}", 1).replace("port = 8649", f"port = {tcp}", 1)
    return text.replace("daemonize = yes", "daemonize = no").replace("setuid = yes", "setuid = no")


@contextlib.contextmanager
def running_gmond(tmp: Path) -> Iterator[tuple[int, int]]:
    """A private gmond: ``(udp port it receives metrics on, tcp port it serves its XML on)``.

    No multicast, no send channel and no modules: it only holds what it is sent.
    """
    gmond = require_tool("gmond")
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port()
    conf = tmp / "gmond.conf"
    conf.write_text(gmond_conf(udp, tcp))
    log = tmp / "gmond.log"
    with open(log, "w") as out:
        process = subprocess.Popen([gmond, "-f", "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: _gmond_xml(tcp) is not None or process.poll() is not None, 30, "gmond to serve XML")
        if process.poll() is not None:
            raise AssertionError(f"gmond exited {process.returncode}: {log.read_text()}")
        yield udp, tcp
    finally:
        stop(process)


def _gmond_xml(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace")


def gmond_metrics(port: int) -> dict[str, dict[str, str]]:
    """Every metric gmond holds, over all hosts: ``{name: {VAL, TYPE, UNITS, SLOPE, ...}}``."""
    import xml.etree.ElementTree as ET

    text = _gmond_xml(port)
    assert text is not None, "gmond stopped answering"
    root = ET.fromstring(text)
    found = {}
    for metric in root.iter("METRIC"):
        attrs = dict(metric.attrib)
        for extra in metric.iter("EXTRA_ELEMENT"):
            attrs[extra.attrib["NAME"]] = extra.attrib["VAL"]
        found[attrs["NAME"]] = attrs
    return found
