"""A network of two ActiveMQ brokers (issue 18): a daemon on each, producers on either, and
every item handled, none lost, none twice.

The brokers are the suite's own (ports 61721-61739, nobody else's), started with
``activemq.sh start ... --peer=PORT``: the network connectors and queue policy of
``conf/activemq-network.xml``, the config we ship.  Each daemon writes what it handled to a
record file of its own, so the test knows which daemon ran what.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.defaults import DEFAULT_SITE
from tests.conftest import RECORDER, read_records, run_cli, start_daemon, wait_for
from tests.stomp import Broker, PrivateActiveMQ, drain, make_broker, private_activemq, raw_connection, stomp_toml

pytestmark = pytest.mark.e2e

# (stomp, openwire) of brokers A and B
A_PORTS, B_PORTS = (61721, 61731), (61722, 61732)
RETRY_DELAY = "3s"  # long enough that a retry is still in B's scheduler when B's daemon stops
MAX_RETRIES = 2
WORKERS, PREFETCH = 2, 10  # per daemon

NET_PLUGIN = (
    '''
"""Records each attempt in the record file of the daemon that ran it (TEST_RECORD)."""
import time
from statusq import QueueHandler
'''
    + RECORDER
    + """
class Net(QueueHandler):
    def handle(self, item):
        p = item.payload
        record(n=p["n"], attempt=item.attempt)
        if p.get("seconds"):
            time.sleep(p["seconds"])
        if p["kind"] == "flaky" and item.attempt == 1:
            raise ValueError("fails once " + str(p["n"]))
        if p["kind"] == "fail":
            raise ValueError("always fails " + str(p["n"]))
        return True

def register(api):
    api.register_handler("net", Net)
"""
)


#: Items that all fail once, sent to B while its daemon runs, which stops with their retries due
FLAKY_BATCH = range(700, 740)


#: Items of the broker-kill test: all succeed at once, so any run past the first is a duplicate
PLAIN = range(2000, 2400)


def kind(n: int) -> str:
    """Every 25th item fails once (retried through the scheduler); every 200th from 13 before
    the last backlog always fails (retried twice, then dead-lettered); PLAIN's all succeed."""
    if n in PLAIN:
        return "ok"
    return "fail" if n % 200 == 13 and n < 800 else "flaky" if n % 25 == 0 or n in FLAKY_BATCH else "ok"


def finished(n: int, attempts: list[int]) -> bool:
    """Item ``n``, whose runs were these attempts, has run its last."""
    last = {"ok": 1, "flaky": 2, "fail": MAX_RETRIES + 1}[kind(n)]
    return bool(attempts) and max(attempts) >= last


def sound(n: int, attempts: list[int]) -> bool:
    """No attempt ran twice, and the item ran until it succeeded or was given up, no further.

    An attempt may be charged without a run: a frame a stopping worker had in flight (dispatched
    into the prefetch window its release freed) comes back marked redelivered, and statusq
    counts that as an attempt (docs/guarantees.md: "the redelivery counted")."""
    if len(set(attempts)) != len(attempts) or not finished(n, attempts):
        return False
    if kind(n) == "ok":
        return len(attempts) == 1
    if kind(n) == "flaky":
        return sorted(attempts)[:-1] in ([], [1])
    return max(attempts) == MAX_RETRIES + 1


class Network:
    """Brokers A and B, bridged both ways, and a daemon on each that can stop and start."""

    def __init__(
        self, a: PrivateActiveMQ, b: PrivateActiveMQ, configs: dict[str, Path], queue: str, tmp_path: Path
    ) -> None:
        self.brokers = {"a": a, "b": b}
        self.queue = queue  # where the items go: the default site's shard of group main
        self.configs = configs
        self.tmp_path = tmp_path
        self.daemons: dict[str, subprocess.Popen[str]] = {}
        self.starts = Counter[str]()

    def records(self, side: str) -> list[dict[str, Any]]:
        return read_records(self.tmp_path / f"handled-{side}.jsonl")

    def attempts(self) -> dict[int, list[int]]:
        """Each item's attempts that ran, on either daemon."""
        out: dict[int, list[int]] = {}
        for side in "ab":
            for r in self.records(side):
                out.setdefault(r["n"], []).append(r["attempt"])
        return out

    def start(self, side: str) -> None:
        """Start ``side``'s daemon, its records to its own file; return once it consumes."""
        self.starts[side] += 1
        log = self.tmp_path / f"daemon-{side}-{self.starts[side]}.log"
        before = os.environ.get("TEST_RECORD")
        os.environ["TEST_RECORD"] = str(self.tmp_path / f"handled-{side}.jsonl")  # start_daemon passes os.environ
        try:
            self.daemons[side] = start_daemon(self.configs[side], log=log)
        finally:
            if before is None:
                del os.environ["TEST_RECORD"]
            else:
                os.environ["TEST_RECORD"] = before
        port = self.brokers[side].stomp_port
        connected = f"consumer connected to 127.0.0.1:{port}"
        wait_for(lambda: connected in log.read_text(), what=f"daemon {side} to subscribe")

    def stop(self, side: str) -> None:
        daemon = self.daemons.pop(side)
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0, f"daemon {side} exits 0 on SIGTERM"

    def enqueue(self, side: str, numbers: range, seconds: float = 0, delay: float | None = None) -> None:
        """Items ``numbers`` to broker ``side``, each running ``seconds``, held ``delay`` s."""
        with statusq.connect(self.configs[side]) as producer:
            for n in numbers:
                producer.enqueue({"n": n, "kind": kind(n), "seconds": seconds}, "net", delay=delay)

    def wait_handled(self, numbers: range, timeout: float = 60) -> None:
        def missing() -> list[int]:
            attempts = self.attempts()
            return [n for n in numbers if not finished(n, attempts.get(n, []))]

        try:
            wait_for(lambda: not missing(), timeout=timeout, what=f"items {numbers.start}-{numbers.stop - 1} handled")
        except AssertionError as e:
            waiting = {side: browse(broker.stomp_port, self.queue) for side, broker in self.brokers.items()}
            raise AssertionError(f"{e}: {len(missing())} not yet, e.g. {missing()[:5]}; waiting: {waiting}") from None


@pytest.fixture
def network(tmp_path: Path, write_config: Callable[..., Path], plugin_dir: Path) -> Iterator[tuple[Network, Broker]]:
    (plugin_dir / "net.py").write_text(NET_PLUGIN)
    names = make_broker("activemq")  # unique destinations; the servers are the private pair
    configs = {}
    for side, stomp_port, other in (("a", A_PORTS[0], B_PORTS[0]), ("b", B_PORTS[0], A_PORTS[0])):
        text = write_config(
            f"sqlite:///{tmp_path / 'store.sqlite'}",  # one shared store, as on one host
            # its own broker first, the other as failover (as a deployment would)
            stomp_toml(names, servers=[f"127.0.0.1:{stomp_port}", f"127.0.0.1:{other}"], prefetch=PREFETCH),
            queue={
                "subsystem": "stomp",
                "max_retries": MAX_RETRIES,
                "retry_delay": RETRY_DELAY,
                "retry_delay_max": RETRY_DELAY,
            },
            daemon={"workers": WORKERS},
        ).read_text()
        folder = tmp_path / side
        folder.mkdir()
        configs[side] = folder / "statusq.toml"
        configs[side].write_text(text.replace(f'paths = ["{plugin_dir.name}"]', f'paths = ["{plugin_dir}"]'))
    for a in private_activemq("net-a", *A_PORTS):
        for b in private_activemq("net-b", *B_PORTS):
            for broker, peer in ((a, B_PORTS[1]), (b, A_PORTS[1])):
                broker.start(peers=[peer])
            net = Network(a, b, configs, names.group_queue(DEFAULT_SITE), tmp_path)
            try:
                yield net, names
            finally:
                for side in list(net.daemons):
                    net.daemons.pop(side).kill()


def browse(port: int, destination: str, seconds: float = 1.0) -> int:
    """How many messages wait on ``destination`` of one broker (a queue browser: it takes none
    and, being a browser, creates no demand on the network)."""
    import queue

    import stomp

    got: queue.SimpleQueue[str] = queue.SimpleQueue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            if frame.headers.get("browser") != "end":
                got.put(frame.headers["message-id"])

    conn = raw_connection(port)
    conn.set_listener("browse", Listener())
    conn.subscribe(destination, "browse", ack="auto", headers={"browser": "true"})  # ends with "browser: end"
    seen = set()
    try:
        while True:
            seen.add(got.get(timeout=seconds))
    except queue.Empty:
        pass
    conn.disconnect()
    return len(seen)


def test_two_networked_brokers_lose_nothing_and_run_nothing_twice(network) -> None:
    net, names = network
    queue_name = net.queue

    # Given brokers A and B bridged both ways, and a daemon on each
    net.start("a")
    net.start("b")

    # When producers enqueue 200 items on each broker (some fail once, one for good on each)
    net.enqueue("a", range(0, 200))
    net.enqueue("b", range(200, 400))
    # Then each is handled as often as it should be, and both daemons got work
    net.wait_handled(range(0, 400))
    assert {r["n"] for r in net.records("a")} and {r["n"] for r in net.records("b")}

    # When B's daemon stops and producers keep sending to B, delayed items among them (held by
    # B's scheduler, then forwarded)
    net.stop("b")
    handled_by_b = len(net.records("b"))
    net.enqueue("b", range(400, 600))
    net.enqueue("b", range(600, 620), delay=1)
    # Then A's daemon runs them all: the bridge forwards B's items to A's consumers
    net.wait_handled(range(400, 620))
    assert len(net.records("b")) == handled_by_b, "B's daemon is stopped"
    assert {r["n"] for r in net.records("a")} >= set(range(400, 620))

    # When B's daemon runs again, items that fail once reach it, and it stops once every first
    # attempt ran: their retries wait in B's scheduler (3 s), with no consumer on B when due
    net.start("b")
    flaky = FLAKY_BATCH
    net.enqueue("b", flaky)
    wait_for(lambda: {r["n"] for side in "ab" for r in net.records(side) if r["attempt"] == 1} >= set(flaky))
    net.stop("b")
    first_on_b = {r["n"] for r in net.records("b") if r["n"] in flaky and r["attempt"] == 1}
    # Then the retries B's daemon scheduled on B are run by A's daemon (scheduled delivery
    # across the bridge)
    net.wait_handled(flaky)
    second_on_a = {r["n"] for r in net.records("a") if r["n"] in flaky and r["attempt"] == 2}
    assert first_on_b & second_on_a, (first_on_b, second_on_a)

    # When a backlog sent to B is forwarded to A, and A's daemon stops while part of it waits on A
    backlog = range(800, 1100)
    net.enqueue("b", backlog, seconds=0.02)
    wait_for(lambda: sum(1 for r in net.records("a") if r["n"] in backlog) >= 30, what="the backlog under way on A")
    net.stop("a")
    stuck_on_a = browse(A_PORTS[0], queue_name)
    net.start("b")
    # Then A sends them back to B, whose daemon now is the only consumer (replayWhenNoConsumers)
    net.wait_handled(backlog, timeout=90)
    assert stuck_on_a > 0, "part of the backlog waited on A when its daemon stopped"
    assert browse(A_PORTS[0], queue_name) == 0 and browse(B_PORTS[0], queue_name) == 0

    # And overall: every item ran until it succeeded or was given up, no attempt twice (none
    # lost, none doubled: the README's "SIGTERM mid-stream: each item handled once"), the dead
    # letters are there once
    net.stop("b")
    numbers = [*range(0, 620), *flaky, *backlog]
    attempts = net.attempts()
    wrong = {n: attempts.get(n) for n in numbers if not sound(n, attempts.get(n, []))}
    assert not wrong, f"items run other than expected (n: attempts run): {wrong}"
    assert set(attempts) == set(numbers)
    # Attempts charged without a run: at most each worker's prefetch window at each stop
    charged = sum(max(a) - len(a) for a in attempts.values())
    assert charged <= sum(net.starts.values()) * WORKERS * PREFETCH, charged
    # and `statusq deadletters` on A lists them all, those dead-lettered on B too: its
    # subscription makes B forward its dead letters to A
    expected = [n for n in numbers if kind(n) == "fail"]
    listed = run_cli("deadletters", "list", "--json", config=net.configs["a"])
    assert listed.returncode == 0, listed.stderr
    assert sorted(json.loads(letter["body"])["n"] for letter in json.loads(listed.stdout)) == expected
    # and listing moved but did not copy them: each is on one broker or the other, once
    letters = drain(A_PORTS[0], names.basename + "dlq") + drain(B_PORTS[0], names.basename + "dlq")
    assert sorted(json.loads(body)["n"] for _, body in letters) == expected


def test_a_broker_killed_mid_run_loses_nothing(network) -> None:
    net, _names = network
    # Given both daemons at work, each on its own broker (the other listed for failover), and
    # 300 items sent to B
    net.start("a")
    net.start("b")
    net.enqueue("b", range(2000, 2300), seconds=0.01)
    wait_for(lambda: len(net.attempts()) >= 50, what="work under way")

    # When broker B is SIGKILLed mid-run, B's producer goes on (it fails over to A), and B starts
    # again
    net.brokers["b"].kill()
    net.enqueue("b", range(2300, 2400), seconds=0.01)
    net.brokers["b"].start(peers=[A_PORTS[1]])

    # Then every item is handled: what B's store held is forwarded to the daemons, both now on A
    net.wait_handled(PLAIN, timeout=120)
    attempts = net.attempts()
    assert set(attempts) == set(PLAIN)
    # Run twice at most: per worker of B's daemon its prefetch window, its ACK window and the
    # item in hand (B died before their ACKs were stored), and the producer's SEND in flight
    twice = sum(len(a) - 1 for a in attempts.values())
    assert twice <= WORKERS * (PREFETCH + PREFETCH // 4 + 1) + 1, twice
