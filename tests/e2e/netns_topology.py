"""The topology the network-namespace fault tests share (tests/e2e/test_netns_faults.py): an
ActiveMQ master/slave pair in a "brokers" namespace, and hosts h1..h3, each running a statusq
daemon (``--workers 2``) and a producer, on one bridge (tests/netns.py).

Files are shared across namespaces (only the network is apart): each host's daemon log, its
handlers' records, and its producers' files of returned ids live in one temporary folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.conftest import COUNTER_PLUGIN, STATUSQ, wait_for
from tests.history import History, check, handled_records, returned_ids
from tests.netns import Netns, network
from tests.stomp import Broker, PrivateActiveMQ, private_activemq, stomp_toml

HOSTS = ["h1", "h2", "h3"]
HEARTBEAT_MS = 2000  # [queue.stomp] heartbeats: what the detection is measured against
PREFETCH = 20
ACK_WINDOW = PREFETCH // 4  # acks go out in batches of prefetch // 4 (docs/guarantees.md)
STOMP_PORTS, OPENWIRE_PORTS = (61701, 61702), (61711, 61712)  # inside the brokers' namespace
PACE = 0.05  # seconds between one producer's enqueues: 20 items/s a host
#: A handler's run: 60 items/s over six workers of 50 ms keep them half busy, so a fault finds
#: items in hand and prefetched (they sleep: the two cores stay free).
HANDLER_SECONDS = 0.05

PRODUCER = '''
"""Enqueue at a steady pace until the stop file appears; write an id only after enqueue returned."""
import os, sys, time
import statusq

config, out, stop, prefix, pace = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
HANDLER_SECONDS = float(sys.argv[6])
qm = statusq.connect(config)
fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
n = 0
while not os.path.exists(stop):
    n += 1
    try:
        item_id = qm.enqueue({"n": f"{prefix}-{n}", "action": "sleep", "seconds": HANDLER_SECONDS}, "count")
    except Exception as exc:  # the broker unreachable: this item is not promised; go on
        print(f"{time.time():.3f} enqueue {n} raised {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(0.2)
        continue
    os.write(fd, f"{item_id}\\n".encode())
    time.sleep(pace)
qm.close()
'''


@dataclass
class Producers:
    """One producer a host for one test, named ``prefix`` (the items' ``n`` start with it)."""

    prefix: str
    folder: Path
    processes: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    def out(self, host: str) -> Path:
        return self.folder / f"{self.prefix}-{host}.ids"

    @property
    def stop_file(self) -> Path:
        return self.folder / f"{self.prefix}.stop"

    def count(self, host: str) -> int:
        return len(returned_ids([self.out(host)]))

    def stop(self) -> None:
        """Let every producer finish the enqueue in hand and exit (killed after 60 s)."""
        self.stop_file.touch()
        for process in self.processes.values():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class Topology:
    """The brokers and the hosts' daemons, configs and files.  Each host's config names its own
    SQLite file as ``db_url`` (the store of pauses, keys and heart-beat rows): the faults here are
    the broker's and the network's, and no test relies on a store shared across hosts."""

    def __init__(self, net: Netns, master: PrivateActiveMQ, slave: PrivateActiveMQ, folder: Path) -> None:
        self.net, self.master, self.slave, self.folder = net, master, slave, folder
        self.broker_host = net.address("brokers")
        self.servers = [f"{self.broker_host}:{port}" for port in STOMP_PORTS]
        self.daemons: dict[str, subprocess.Popen[Any]] = {}
        tag = uuid.uuid4().hex[:10]
        names = Broker("activemq", STOMP_PORTS[0], f"/queue/t{tag}/", f"/topic/t{tag}.control")
        plugins = folder / "my-plugins"
        plugins.mkdir()
        (plugins / "counter.py").write_text(COUNTER_PLUGIN)
        (folder / "producer.py").write_text(PRODUCER)
        for host in HOSTS:
            self._write_config(host, names, plugins)

    def _write_config(self, host: str, names: Broker, plugins: Path) -> None:
        home = self.folder / host
        home.mkdir()
        stomp = stomp_toml(
            names,
            servers=self.servers,
            prefetch=PREFETCH,
            heartbeats=[HEARTBEAT_MS, HEARTBEAT_MS],
            receipt_timeout="3s",
        )
        queue = {
            "subsystem": "stomp",
            "db_url": f"sqlite:///{home / 'store.sqlite'}",
            "max_retries": 10,
            "retry_delay": "10ms",
            "retry_delay_max": "50ms",
        }
        (home / "statusq.toml").write_text(
            'var_dir = "var"\n[queue]\n'
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in queue.items())
            + '[daemon]\ntime_limit = "20s"\ntime_limit_grace = "5s"\n[metrics]\nenabled = false\n'
            + f"[plugins]\npaths = [{json.dumps(str(plugins))}]\n"
            + stomp
        )

    # -- files -----------------------------------------------------------------------------------

    def config(self, host: str) -> Path:
        return self.folder / host / "statusq.toml"

    def log(self, host: str) -> Path:
        return self.folder / host / "daemon.log"

    def records(self, host: str) -> Path:
        return self.folder / host / "handled.jsonl"

    def mark(self, host: str, text: str) -> None:
        """A line of the test's own in ``host``'s daemon log (opened O_APPEND by both), so the
        log's order says what the daemon logged before and after it."""
        with open(self.log(host), "a") as log:
            log.write(f"==== test: {text} ====\n")

    # -- daemons ---------------------------------------------------------------------------------

    def start_daemon(self, host: str) -> None:
        fd = os.open(self.log(host), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            self.daemons[host] = self.net.popen(
                host,
                [*STATUSQ, "--config", str(self.config(host)), "daemon", "--workers", "2"],
                stdout=fd,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TEST_RECORD": str(self.records(host))},
            )
        finally:
            os.close(fd)

    def last_connect(self, host: str) -> float:
        """When ``host``'s daemon last logged a connection (any link), as a Unix time."""
        stamps = re.findall(
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .* connected to ", self.log(host).read_text(), re.M
        )
        if not stamps:
            return 0.0
        return datetime.strptime(stamps[-1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # logging's local time

    def connected(self, host: str) -> int:
        """How many consumer connections ``host``'s daemon has logged so far."""
        text = self.log(host).read_text() if self.log(host).exists() else ""
        return text.count("consumer connected to ")

    def kill_daemon(self, host: str) -> list[int]:
        """SIGKILL ``host``'s supervisor and every process under it, at once; their pids."""
        root = self.daemons[host].pid
        pids = [root, *descendants(root)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.daemons[host].wait(timeout=30)
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=30, what="the host's processes gone")
        return pids

    # -- producers and history -------------------------------------------------------------------

    def start_producers(self, prefix: str) -> Producers:
        producers = Producers(prefix, self.folder)
        for host in HOSTS:
            err = open(self.folder / f"{prefix}-{host}.err", "w")  # noqa: SIM115 - owned by the process
            argv = [
                *STATUSQ[:1],
                str(self.folder / "producer.py"),
                str(self.config(host)),
                str(producers.out(host)),
                str(producers.stop_file),
                f"{prefix}-{host}",
                str(PACE),
                str(HANDLER_SECONDS),
            ]
            producers.processes[host] = self.net.popen(host, argv, stdout=subprocess.DEVNULL, stderr=err)
            err.close()
        return producers

    def handled(self, prefix: str, hosts: list[str] = HOSTS) -> list[dict[str, object]]:
        records = handled_records(self.records(host) for host in hosts)
        return [r for r in records if str(r.get("n", "")).startswith(prefix + "-")]

    def history(self, producers: Producers) -> History:
        returned = returned_ids(producers.out(host) for host in HOSTS)
        return check(returned, [str(r["id"]) for r in self.handled(producers.prefix)])

    def handles_new_items(self, host: str, producers: Producers, counts: dict[str, int], offset: int) -> bool:
        """Whether ``host``'s handlers wrote, past byte ``offset`` of its records, an item whose
        id some producer was returned after it had ``counts`` ids: the host works again."""
        new = {i for h in HOSTS for i in returned_ids([producers.out(h)])[counts[h] :]}
        records = [json.loads(line) for line in tail(self.records(host), offset).splitlines() if line.endswith("}")]
        return any(r.get("id") in new for r in records)


def tail(path: Path, offset: int) -> str:
    """``path`` from byte ``offset`` on ("" if it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (from /proc's children lists), children before grandchildren."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop(0)
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def topology(folder: Path) -> Iterator[Topology]:
    """The brokers' namespace with a master/slave pair sharing a store, three hosts each with a
    daemon working; everything killed and removed afterwards (the brokers' folders too)."""
    for net in network(["brokers", *HOSTS]):
        limits = {"ACTIVEMQ_BIND": "0.0.0.0"}  # reachable from the hosts' namespaces
        store, wrap = folder / "shared-store", net.wrap("brokers")
        names = [f"nn{net.tag}a", f"nn{net.tag}b"]
        for master in private_activemq(names[0], STOMP_PORTS[0], OPENWIRE_PORTS[0], store, limits, wrap):
            for slave in private_activemq(names[1], STOMP_PORTS[1], OPENWIRE_PORTS[1], store, limits, wrap):
                try:
                    master.start()
                    slave.start(wait=False)  # a standby on the store's lock: no port yet
                    topo = Topology(net, master, slave, folder)
                    for host in HOSTS:
                        topo.start_daemon(host)
                    for host in HOSTS:
                        wait_for(lambda t=topo, h=host: t.connected(h) >= 2, timeout=90, what=f"{host}'s workers")
                    yield topo
                    for process in topo.daemons.values():
                        process.send_signal(signal.SIGTERM)
                        try:
                            process.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            process.kill()
                finally:
                    for broker in (master, slave):
                        broker.kill()
                        shutil.rmtree(broker.base, ignore_errors=True)
