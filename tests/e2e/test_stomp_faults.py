"""Broker faults: a restart mid-run and a failover (ActiveMQ master/slave, RabbitMQ cluster) lose
nothing.

Each test runs its own ActiveMQ or RabbitMQ cluster on its own ports, so stopping or killing it
harms no other test; the quorum test kills a node of the suite's 3-node cluster
(scripts/servers/rabbitmq-quorum.sh), which no other test uses, and starts it again.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from statusq.defaults import DEFAULT_SITE, STOMP_SHARDS
from statusq.errors import ConnectionClosed
from statusq.queues.stomp.destinations import shard_of
from tests.conftest import ROOT, read_records, start_daemon, wait_for
from tests.history import assert_reruns_per_worker_within
from tests.servers import reachable
from tests.stomp import (
    PrivateActiveMQ,
    QuorumCluster,
    drain,
    make_broker,
    private_activemq,
    quorum_cluster,
    stomp_toml,
)

pytestmark = pytest.mark.e2e


class RabbitNode:
    """The suite's own RabbitMQ node (never the machine's): stopped and started in place."""

    script = str(ROOT / "scripts" / "servers" / "rabbitmq.sh")

    def stop(self) -> None:
        self._run("stop")

    def start(self) -> None:
        self._run("ensure")

    def _run(self, command: str) -> None:
        done = subprocess.run([self.script, command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"rabbitmq.sh {command} failed ({done.returncode}):\n{done.stderr}"


@pytest.fixture(params=["activemq", pytest.param("rabbitmq", marks=pytest.mark.serial)])
def restartable(request: pytest.FixtureRequest) -> Iterator[tuple[str, PrivateActiveMQ | RabbitNode]]:
    if request.param == "rabbitmq":
        make_broker("rabbitmq")  # reachable, or skip/fail as the suite's rule says
        node = RabbitNode()
        try:
            yield "127.0.0.1:61614", node
        finally:
            node.start()  # whatever happened, leave it running for the other tests
        return
    for broker in private_activemq("restart", 61623, 61626):
        broker.start()
        yield "127.0.0.1:61623", broker


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[PrivateActiveMQ, PrivateActiveMQ]]:
    store = tmp_path / "shared-store"
    for master in private_activemq("fa", 61631, 61641, store):
        for slave in private_activemq("fb", 61632, 61642, store):
            master.start()
            slave.start(wait=False)  # waits on the store's lock, opens no port yet
            yield master, slave


def config_for(write_config: Callable[..., Path], servers: list[str]) -> Path:
    broker = make_broker("activemq")  # unique destinations; servers are the private ones
    return write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, servers=servers, prefetch=20),
        queue={"subsystem": "stomp", "max_retries": 10},
    )


def handled(record_file: Path) -> Counter[int]:
    return Counter(r["n"] for r in read_records(record_file))


def test_persistent_items_survive_a_broker_restart_mid_run(restartable, write_config, record_file, tmp_path) -> None:
    # Given 300 persistent items and a daemon working through them
    server, broker = restartable
    config = config_for(write_config, [server])
    with statusq.connect(config) as qm:
        for n in range(300):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 0.01}, "count")
    # (idle-exit 60 s: a daemon whose broker is down counts as idle, and a RabbitMQ stop and
    # start took over 20 s on a loaded CI machine, when the daemon gave up with 106 items left)
    daemon = start_daemon(config, "--idle-exit", "60", log=tmp_path / "daemon.log")
    wait_for(lambda: len(handled(record_file)) >= 30, what="work under way")

    # When the broker stops and starts again
    broker.stop()
    broker.start()

    # Then the daemon reconnects, and every item is handled, none lost
    assert daemon.wait(timeout=240) == 0
    counts = handled(record_file)
    assert set(counts) == set(range(300))
    # Run twice: per worker at most its prefetch window and the item in hand (the total is that
    # times the workers, which follow the machine's cores)
    assert_reruns_per_worker_within(read_records(record_file), 21)
    log = (tmp_path / "daemon.log").read_text()
    assert log.count("consumer connected") >= 2, "it reconnected"


def test_failover_to_the_slave_loses_nothing(pair, write_config, record_file, tmp_path) -> None:
    master, _slave = pair
    config = config_for(write_config, ["127.0.0.1:61631", "127.0.0.1:61632"])
    producer = statusq.connect(config)
    for n in range(300):
        producer.enqueue({"n": n, "action": "sleep", "seconds": 0.01}, "count")
    daemon = start_daemon(config, "--idle-exit", "20", log=tmp_path / "daemon.log")
    wait_for(lambda: len(handled(record_file)) >= 30, what="work under way")

    # When the master is killed mid-run
    master.kill()
    wait_for(lambda: reachable("127.0.0.1", 61632), timeout=120, what="the slave to take over")

    # Then the producer fails over too, and every item, old and new, is handled
    for n in range(300, 400):
        producer.enqueue({"n": n}, "count")
    producer.close()
    assert daemon.wait(timeout=240) == 0
    counts = handled(record_file)
    assert set(counts) == set(range(400))
    assert_reruns_per_worker_within(read_records(record_file), 21)
    assert "127.0.0.1:61632" in (tmp_path / "daemon.log").read_text()


@pytest.fixture
def quorum() -> Iterator[QuorumCluster]:
    yield from quorum_cluster()


FAILING = 100  # every 100th item fails for good: it goes through the TTL holding queues to the DLQ


@pytest.mark.serial  # kills a node of the cluster test_quorum.py uses
def test_rabbitmq_cluster_failover_loses_nothing(quorum, write_config, record_file, tmp_path) -> None:
    """The legacy way: classic queues mirrored by an ``ha-mode`` policy (RabbitMQ before 3.10),
    on the suite's 3-node cluster (its queues of this test's own, deleted afterwards)."""
    # Given a RabbitMQ cluster whose every queue of this test (work, retry holding queues, DLQ:
    # all named "<tag>.…" on RabbitMQ) is classic, mirrored on every node
    broker = make_broker("rabbitmq", 61671)  # unique destinations on the cluster's first node
    tag = broker.physical(broker.basename).removeprefix("/queue/")
    policy = f"statusq-ha-{tag}"
    quorum.policy(policy, rf"^{tag}\.", '{"ha-mode": "all", "ha-sync-mode": "automatic"}')
    try:
        _mirrored_failover(quorum, broker, tag, policy, write_config, record_file, tmp_path)
    finally:
        quorum.unpolicy(policy)
        quorum.forget(tag + ".")


def _mirrored_failover(quorum, broker, tag, policy, write_config, record_file, tmp_path) -> None:
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, servers=quorum.servers, prefetch=20),
        # Retries wait 1 s in a holding queue: some are there when the node goes.
        queue={"subsystem": "stomp", "max_retries": 3, "retry_delay": "1s", "retry_delay_max": "1s"},
        daemon={"workers": 2},  # the duplicate bound below is per worker: not one per CPU
    )

    def item(n: int) -> dict[str, object]:
        return {"n": n, "action": "false"} if n % FAILING == 0 else {"n": n, "action": "sleep", "seconds": 0.005}

    # and 1,600 persistent items, sent to node 1, the first server listed
    producer = statusq.connect(config)
    for n in range(1600):
        producer.enqueue(item(n), "count")
    # (the default site's shard of the group: [queue.stomp] shards, statusq.queues.stomp.destinations)
    main = f"{tag}.main.shard-{shard_of(DEFAULT_SITE, STOMP_SHARDS)}"
    work = quorum.queues(2)[main]
    assert work["policy"] == policy and "statusq-q2@localhost" in work["synchronised_slave_pids"], work
    # (idle 10 s, not 20: node 2 holds the queues within a second of node 1's death, where an
    # ActiveMQ slave first has to win the store's lock)
    daemon = start_daemon(config, "--idle-exit", "10", log=tmp_path / "daemon.log")
    wait_for(lambda: len(handled(record_file)) >= 200, what="work under way")
    assert "127.0.0.1:61671" in (tmp_path / "daemon.log").read_text(), "the daemon works off node 1"

    # When node 1, the one in use, is killed mid-run
    quorum.kill(1)

    # Then the producer fails over to node 2 too, and every item, old and new, is handled there
    for n in range(1600, 2000):
        producer.enqueue(item(n), "count")
    producer.close()
    assert daemon.wait(timeout=240) == 0
    counts = handled(record_file)
    good = {n for n in range(2000) if n % FAILING}
    assert set(counts) == set(range(2000))
    # Run twice: per worker the items done but not yet acked (acks go out in fives) and the one in
    # hand, plus any ack node 1 had taken but not yet passed on to its mirror.
    assert_reruns_per_worker_within([r for r in read_records(record_file) if r["n"] in good], 21)
    log = (tmp_path / "daemon.log").read_text()
    assert "127.0.0.1:61672" in log, "it reconnected to node 2"
    # and every failing item reached the dead-letter queue after its retries, none lost on the way
    dead = drain(61672, broker.physical(broker.basename + "dlq"))
    assert {json.loads(body)["n"] for _headers, body in dead} == set(range(0, 2000, FAILING))
    assert quorum.queues(2)[f"{main}.delay.1000"]["policy"] == policy, "holding queues mirrored too"


@pytest.mark.serial  # kills a node of the cluster test_quorum.py uses
def test_rabbitmq_quorum_queues_survive_a_sigkilled_node(quorum, write_config, record_file, tmp_path) -> None:
    # Given the 3-node cluster, and this test's queues (all named "<tag>.…") declared quorum by
    # statusq. Every item succeeds: a retry held in a holding queue when a node dies is the gap
    # the RabbitMQ page describes (3.10 dead-letters it at most once, during the election too).
    broker = make_broker("rabbitmq", 61671, queue_type="quorum")
    tag = broker.physical(broker.basename).removeprefix("/queue/")
    try:
        run_through_a_node_kill(quorum, broker, tag, write_config, record_file, tmp_path)
    finally:
        quorum.ensure()  # node 1 back (a majority could clean up without it; it is cheaper with it)
        quorum.forget(f"{tag}.")


def run_through_a_node_kill(quorum, broker, tag, write_config, record_file, tmp_path) -> None:
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, servers=quorum.servers, prefetch=20),
        queue={"subsystem": "stomp"},
        daemon={"workers": 2},  # the duplicate bound below is per worker: not one per CPU
    )

    def item(n: int) -> dict[str, object]:
        return {"n": n, "action": "sleep", "seconds": 0.005}

    # and 1,200 persistent items, sent to node 1, the first server listed, replicated on all three
    producer = statusq.connect(config)
    for n in range(1200):
        producer.enqueue(item(n), "count")
    main = f"{tag}.main.shard-{shard_of(DEFAULT_SITE, STOMP_SHARDS)}"
    work = quorum.queues(2)[main]
    assert work["type"] == "quorum" and work["members"].count("@localhost") == 3, work
    daemon = start_daemon(config, "--idle-exit", "10", log=tmp_path / "daemon.log")
    wait_for(lambda: len(handled(record_file)) >= 200, what="work under way")
    assert "127.0.0.1:61671" in (tmp_path / "daemon.log").read_text(), "the daemon works off node 1"

    # When node 1, the one in use and the queues' leader, is SIGKILLed mid-run
    quorum.kill(1)

    # Then the producer fails over too, and every item enqueued is handled on nodes 2 and 3.
    # Until they have elected new leaders (a second or two), RabbitMQ refuses what is sent to the
    # queues node 1 led, and 3.10's STOMP plugin closes the connection on that refusal (a
    # basic.nack it has no clause for): such an enqueue raises ConnectionClosed and the caller
    # retries; only the ones that returned count.
    refused, n = [], 1200
    deadline = time.monotonic() + 90
    while n - 1200 - len(refused) < 300:
        assert time.monotonic() < deadline, f"the cluster still refuses enqueues: {len(refused)} refused"
        try:
            producer.enqueue(item(n), "count")
        except ConnectionClosed:
            refused.append(n)
            time.sleep(0.1)
        n += 1
    producer.close()
    assert daemon.wait(timeout=240) == 0
    counts = handled(record_file)
    enqueued = set(range(n)) - set(refused)
    assert enqueued <= set(counts), f"lost: {sorted(enqueued - set(counts))[:20]}"
    # Run twice at most, per worker: the item in hand, and the handled ones whose ACK was still
    # batched (a batch of 5), or written but not yet committed by a majority, when node 1 died.
    # A quorum queue frees a consumer's window only once a settlement is committed, so those are
    # within its ACK window: the prefetch of 20 (measured: 8 to 18 in six runs).
    duplicates = sum(counts[n] for n in enqueued) - len(enqueued)
    assert_reruns_per_worker_within([r for r in read_records(record_file) if r["n"] in enqueued], 1 + 20)
    log = (tmp_path / "daemon.log").read_text()
    assert "127.0.0.1:61672" in log or "127.0.0.1:61673" in log, "it reconnected to another node"
    print(f"quorum failover: {duplicates} duplicates, {len(refused)} enqueues refused")
