"""Brokers for the STOMP tests: the shared ActiveMQ and RabbitMQ, and private ActiveMQ instances
for tests that stop, kill or fail over a broker (so no other test loses its broker)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import stomp

from statusq.defaults import STOMP_MAX_PRIORITY, STOMP_SHARDS
from statusq.queues.stomp.destinations import Destinations, rabbitmq_name
from tests.servers import require

ROOT = Path(__file__).resolve().parent.parent
ACTIVEMQ_SH = ROOT / "scripts" / "servers" / "activemq.sh"


@dataclass(frozen=True)
class Broker:
    name: str  # "activemq" or "rabbitmq"
    port: int
    basename: str  # unique per test: queues never leak between tests
    control: str
    queue_type: str = "classic"  # RabbitMQ: what [queue.stomp] queue_type declares queues as

    @property
    def servers(self) -> list[str]:
        return [f"127.0.0.1:{self.port}"]

    def group_queue(self, site: str, group: str = "main") -> str:
        """Where statusq sends ``site``'s items of ``group`` by default: the group's shard for
        the site (``[queue.stomp] shards``, 4 unless a test sets it)."""
        return Destinations(self.basename, [], STOMP_SHARDS).for_item(group, "", site)

    def physical(self, destination: str) -> str:
        """What a foreign client must send to (RabbitMQ has no '/' inside queue names)."""
        if self.name != "rabbitmq":
            return destination
        return rabbitmq_name(destination)


PORTS = {"activemq": 61613, "rabbitmq": 61614}


#: The suite's RabbitMQ node's script (`rabbitmq.sh ctl ...`: rabbitmqctl on it) and STOMP port;
#: STATUSQ_TEST_RABBITMQ_SH and _PORT name another node's, to try a test that changes the node's
#: settings (an alarm, a consumer timeout) on a private node while others use the suite's.
RABBITMQ_SH = os.environ.get("STATUSQ_TEST_RABBITMQ_SH", str(ROOT / "scripts" / "servers" / "rabbitmq.sh"))
RABBITMQ_PORT = int(os.environ.get("STATUSQ_TEST_RABBITMQ_PORT", PORTS["rabbitmq"]))


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run([RABBITMQ_SH, "ctl", *args], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}"
    return done.stdout.strip()


def make_broker(name: str, port: int | None = None, queue_type: str = "classic") -> Broker:
    """The broker's address and destinations of the test's own.  ``queue_type = "quorum"``:
    RabbitMQ declares them as quorum queues (their unique names: no classic queue exists yet)."""
    port = port or PORTS[name]
    require("127.0.0.1", port, f"{name} STOMP")
    tag = uuid.uuid4().hex[:10]
    return Broker(name, port, f"/queue/t{tag}/", f"/topic/t{tag}.control", queue_type)


def stomp_toml(broker: Broker, servers: list[str] | None = None, **extra: Any) -> str:
    import json

    values = {
        "servers": servers or broker.servers,
        "username": "guest",
        "password": "guest",
        "basename": broker.basename,
        "control_channel": broker.control,
        "control_secret": "test-control-secret-0123",
        "reconnect_delay": "200ms",
        "reconnect_delay_max": "2s",
        **({"queue_type": broker.queue_type} if broker.queue_type != "classic" else {}),
        **extra,
    }
    return "[queue.stomp]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def work_queue_headers(broker: Broker) -> dict[str, str]:
    """What a foreign client's SEND or SUBSCRIBE to a work queue must carry on RabbitMQ: the
    ``x-max-priority`` statusq declares it with, or on quorum queues ``x-queue-type`` (any other
    arguments are refused there)."""
    if broker.name != "rabbitmq":
        return {}
    if broker.queue_type == "quorum":
        return {"x-queue-type": "quorum"}
    return {"x-max-priority": str(STOMP_MAX_PRIORITY)}


def raw_connection(port: int) -> Any:
    """A plain stomp.py client that knows nothing of statusq (a foreign producer or a probe)."""
    conn = stomp.Connection12([("127.0.0.1", port)], vhost="/", auto_decode=False)
    conn.connect("guest", "guest", wait=True)
    return conn


def drain(
    port: int, destination: str, seconds: float = 2.0, headers: dict[str, str] | None = None
) -> list[tuple[dict[str, str], bytes]]:
    """Consume and ack everything on a destination (e.g. the dead-letter queue); ``headers``: a
    work queue's declaration arguments (:func:`work_queue_headers`)."""
    import queue

    got: queue.SimpleQueue[tuple[dict[str, str], bytes]] = queue.SimpleQueue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            got.put((dict(frame.headers), frame.body))
            conn.ack(frame.headers["ack"])

    conn = raw_connection(port)
    conn.set_listener("drain", Listener())
    conn.subscribe(destination, "drain", ack="client-individual", headers=headers or {})
    out = []
    try:
        while True:
            out.append(got.get(timeout=seconds))
    except queue.Empty:
        pass
    conn.disconnect()
    return out


class PrivateActiveMQ:
    """An ActiveMQ of the test's own, on its own ports (and, for a pair, a shared store)."""

    def __init__(
        self,
        name: str,
        stomp_port: int,
        openwire_port: int,
        store: Path | None = None,
        limits: dict[str, str] | None = None,
        wrap: list[str] | None = None,
    ) -> None:
        self.name, self.stomp_port, self.openwire_port, self.store = name, stomp_port, openwire_port, store
        #: activemq.sh's ACTIVEMQ_* variables for this broker (its defaults otherwise).
        self.limits = limits or {}
        #: What activemq.sh runs under, e.g. ``ip netns exec NS`` (tests/netns.py): the broker, and
        #: the script's checks of 127.0.0.1, are then in that network namespace.
        self.wrap = wrap or []

    @property
    def base(self) -> Path:
        """Where activemq.sh keeps this broker's conf, data, log and pid."""
        return Path("/var/tmp/statusq-servers") / f"activemq-{self.name}"

    @property
    def pid(self) -> int:
        return int((self.base / "pid").read_text())

    def start(self, wait: bool = True, peers: Sequence[int] = ()) -> None:
        """``peers``: the OpenWire ports of brokers this one forms a network with (it bridges to
        each; conf/activemq-network.xml's connectors and queue policy)."""
        args = [str(ACTIVEMQ_SH), "start", self.name, str(self.stomp_port), str(self.openwire_port)]
        if self.store is not None:
            args.append(str(self.store))
        if not wait:
            args.append("--no-wait")
        args += [f"--peer={port}" for port in peers]
        env = {**os.environ, **self.limits}
        subprocess.run([*self.wrap, *args], check=True, capture_output=True, timeout=120, env=env)

    def stop(self) -> None:
        subprocess.run([*self.wrap, str(ACTIVEMQ_SH), "stop", self.name], capture_output=True, timeout=60)

    def kill(self) -> None:
        subprocess.run([*self.wrap, str(ACTIVEMQ_SH), "kill", self.name], capture_output=True, timeout=60)


#: A private broker small enough to fill in seconds: a 3 MB store (20 KB items: about 150).
SMALL_ACTIVEMQ = {
    "ACTIVEMQ_STORE_LIMIT": "3 mb",
    "ACTIVEMQ_JOURNAL_FILE": "1mb",  # the store limit cannot be below one journal file
    "ACTIVEMQ_MEMORY_LIMIT": "2 mb",
    "ACTIVEMQ_TEMP_LIMIT": "64 mb",  # nor the temp limit below the temp store's 32 MB file
    "ACTIVEMQ_SEND_FAIL_MS": "1000",  # each refused SEND holds its connection this long
    "ACTIVEMQ_STORE_CLEANUP_MS": "1000",  # drained journal files freed within a second, not 30
}


def private_activemq(
    name: str,
    stomp_port: int,
    openwire_port: int,
    store: Path | None = None,
    limits: dict[str, str] | None = None,
    wrap: list[str] | None = None,
) -> Iterator[PrivateActiveMQ]:
    require("127.0.0.1", 61613, "ActiveMQ (the package)")  # proves activemq is installed here
    broker = PrivateActiveMQ(name, stomp_port, openwire_port, store, limits, wrap)
    try:
        yield broker
    finally:
        broker.kill()


RABBITMQ_QUORUM_SH = ROOT / "scripts" / "servers" / "rabbitmq-quorum.sh"


class QuorumCluster:
    """The suite's 3-node RabbitMQ cluster for quorum queues (scripts/servers/rabbitmq-quorum.sh,
    started by ensure-all.sh and kept running): a test may kill a node; :func:`quorum_cluster`
    brings it back and deletes the test's queues afterwards."""

    def __init__(self) -> None:
        self.servers = ["127.0.0.1:61671", "127.0.0.1:61672", "127.0.0.1:61673"]  # nodes 1, 2, 3

    def _run(self, *args: str, timeout: float = 90) -> str:
        done = subprocess.run(
            [str(RABBITMQ_QUORUM_SH), *args], check=True, capture_output=True, text=True, timeout=timeout
        )
        return done.stdout

    def ensure(self) -> None:
        self._run("ensure", timeout=180)  # the script gives up after 120 s with the log's tail

    def kill(self, node: int) -> None:
        self._run("kill", str(node))

    def policy(self, name: str, pattern: str, definition: str) -> None:
        self._run("policy", name, pattern, definition)

    def unpolicy(self, name: str) -> None:
        self._run("unpolicy", name)

    def forget(self, prefix: str) -> None:
        self._run("forget", prefix)

    def queues(self, node: int) -> dict[str, dict[str, str]]:
        """Node ``node``'s view of the queues, by name: type, leader, members, messages, policy."""
        lines = self._run("queues", str(node)).splitlines()
        if not lines:
            return {}
        header, *rows = (line.split("\t") for line in lines)
        return {row[0]: dict(zip(header, row, strict=False)) for row in rows}


def quorum_cluster() -> Iterator[QuorumCluster]:
    """The suite's quorum cluster, all three nodes answering (skip, or fail under CI, if not);
    afterwards every node is running again, whatever the test killed."""
    for port in (61671, 61672, 61673):
        require("127.0.0.1", port, "the RabbitMQ quorum cluster's STOMP (scripts/servers/rabbitmq-quorum.sh)")
    cluster = QuorumCluster()
    try:
        yield cluster
    finally:
        cluster.ensure()
