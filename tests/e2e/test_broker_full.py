"""A full broker pushes back instead of dying (issue 18).

ActiveMQ: the limits scripts/servers/activemq.sh writes (``<systemUsage>`` with
``sendFailIfNoSpaceAfterTimeout``), filled on purpose on the test's own broker, with limits small
enough to reach in seconds (a 3 MB store in 1 MB journal files); the shipped and started brokers
have the same policy at full size.

RabbitMQ: a memory alarm (what the node raises past ``vm_memory_high_watermark``), raised on the
suite's node by setting the watermark to 0 for the test's length: every publisher is blocked,
consumers go on.  Filling real memory would take minutes and gigabytes; the alarm is the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from statusq import BrokerFull
from tests.conftest import ROOT, read_records, start_daemon, wait_for
from tests.stomp import (
    RABBITMQ_PORT,
    SMALL_ACTIVEMQ,
    PrivateActiveMQ,
    drain,
    make_broker,
    private_activemq,
    rabbitmqctl,
    stomp_toml,
)

pytestmark = pytest.mark.e2e

PAD = "x" * 20_000  # a 20 KB item: the store fills after about 150 of them
LIMITS = SMALL_ACTIVEMQ


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[PrivateActiveMQ]:
    # A store of its own in tmp_path: empty at every run, whatever an earlier run left.
    for broker in private_activemq("full", 61681, 61682, tmp_path / "store", LIMITS):
        broker.start()
        yield broker


def test_a_full_activemq_refuses_with_broker_full_and_loses_nothing_it_accepted(
    small_broker: PrivateActiveMQ, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a broker whose store holds about 150 items of 20 KB
    broker = make_broker("activemq")  # unique destinations; the server is the small one
    servers = [f"127.0.0.1:{small_broker.stomp_port}"]
    config = write_config("sqlite:///unused.sqlite", stomp_toml(broker, servers=servers), queue={"subsystem": "stomp"})

    # When a producer enqueues until the broker refuses
    accepted: list[int] = []
    refusal: BrokerFull | None = None
    qm = statusq.connect(config)
    try:
        for n in range(2_000):
            try:
                qm.enqueue({"n": n, "pad": PAD}, "count")
            except BrokerFull as exc:
                refusal = exc
                break
            accepted.append(n)
    finally:
        qm.close()

    # Then the refusal is a BrokerFull that says so, after some items were taken
    assert refusal is not None, "2,000 items of 20 KB fitted in a 3 MB store"
    assert "full" in str(refusal) and "Persistent store is Full" in str(refusal)
    assert 50 <= len(accepted) < 2_000
    # And every item whose enqueue returned is handled once the backlog drains
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "3", log=tmp_path / "daemon.log")
    assert daemon.wait(timeout=180) == 0
    handled = sorted(r["n"] for r in read_records(record_file))
    assert handled == accepted
    # And the broker takes items again once its store has freed the drained journal files
    wait_for(lambda: _takes(config), timeout=60, what="the drained broker to take items again")


@pytest.mark.parametrize("delays", ["auto", "broker"])
def test_delayed_items_that_come_due_while_activemq_is_full_wait_in_the_store_and_run(
    delays: str,
    small_broker: PrivateActiveMQ,
    write_config: Callable[..., Path],
    record_file: Path,
    tmp_path: Path,
) -> None:
    # Given items delayed 2 s: in the shared store (the default on ActiveMQ), or in ActiveMQ's
    # scheduler ("broker", as before 2026-12)
    broker = make_broker("activemq")
    servers = [f"127.0.0.1:{small_broker.stomp_port}"]
    toml = stomp_toml(broker, servers=servers, delays=delays)
    config = write_config(f"sqlite:///{tmp_path / 'shared.sqlite'}", toml, queue={"subsystem": "stomp"})
    with statusq.connect(config) as qm:
        delayed = [-(n + 1) for n in range(20)]
        for n in delayed:
            qm.enqueue({"n": n}, "count", delay=2)
        # And a broker filled until it refuses with items that take 30 ms each, nobody consuming,
        # so they come due while it is full and stay due while a worker drains it
        accepted = _fill(qm, {"action": "sleep", "seconds": 0.03})
    time.sleep(3)

    # When a daemon drains the backlog (exiting once idle for 3 s)
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "3", log=tmp_path / "daemon.log")
    assert daemon.wait(timeout=180) == 0
    handled = sorted(r["n"] for r in read_records(record_file))
    dropped = (small_broker.base / "log").read_text().count("Failed to send scheduled message")

    if delays == "auto":
        # Then every item ran, the delayed ones too: the relay was refused while the broker was
        # full, kept them, and sent them once the drain made room
        assert handled == sorted(accepted + delayed)
        assert dropped == 0
        assert "delayed items not relayed (kept in the shared store" in (tmp_path / "daemon.log").read_text()
    else:
        # Then ActiveMQ's scheduler dropped what came due while the store was full (the reason
        # for the default): logged, never sent, never run
        assert dropped > 0, "ActiveMQ's scheduler kept delayed items through a full store: revisit the default"
        assert len([n for n in handled if n < 0]) < len(delayed), "the scheduler sent every one after all"
        assert [n for n in handled if n >= 0] == accepted


def test_dead_letters_a_full_activemq_refuses_are_parked_in_the_store_and_arrive_later(
    small_broker: PrivateActiveMQ, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given 20 items that fail at once (no retries: dead-lettered at the first failure), queued
    # first, then a broker filled until it refuses
    broker = make_broker("activemq")
    servers = [f"127.0.0.1:{small_broker.stomp_port}"]
    config = write_config(
        f"sqlite:///{tmp_path / 'shared.sqlite'}",
        stomp_toml(broker, servers=servers),
        queue={"subsystem": "stomp", "max_retries": 0},
    )
    with statusq.connect(config) as qm:
        failing = [qm.enqueue({"n": -(n + 1), "action": "raise"}, "count") for n in range(20)]
        accepted = _fill(qm, {"action": "sleep", "seconds": 0.01})

    # When a daemon drains it: the failing ones run first, while the broker is still full
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "3", log=log)
    assert daemon.wait(timeout=180) == 0

    # Then their dead letters, refused, were parked in the shared store with their originals
    # acked (not held unacked in the prefetch window), and every other item ran
    assert "parked in the shared store (their originals acked)" in log.read_text()
    assert sorted(r["n"] for r in read_records(record_file) if r["n"] >= 0) == accepted
    # And every one reached the dead-letter queue once the broker took SENDs again
    dead = drain(small_broker.stomp_port, broker.basename + "dlq", seconds=5)
    # (once each: only a connection lost with a commit unanswered could make a copy more, and
    # none is lost here; a COMMIT refused before its SEND's ERROR once failed the next commit's
    # receipt too, and that commit's 19 dead letters, taken, were parked and sent twice)
    arrived = [h["statusq-id"] for h, _ in dead]
    print(f"dead letters: {len(arrived)} for {len(failing)} items")
    assert set(arrived) == set(failing)
    assert len(arrived) == len(failing), "a dead letter the broker took was parked and sent again"


def _fill(qm: statusq.QueueManager, payload: dict[str, object]) -> list[int]:
    """Enqueue 20 KB items until the broker refuses one (BrokerFull); the ones it took."""
    accepted: list[int] = []
    for n in range(2_000):
        try:
            qm.enqueue({"n": n, "pad": PAD, **payload}, "count")
        except BrokerFull:
            return accepted
        accepted.append(n)
    raise AssertionError("2,000 items of 20 KB fitted in a 3 MB store")


def _takes(config: Path) -> bool:
    try:
        with statusq.connect(config) as qm:
            qm.enqueue({"n": -1, "pad": PAD}, "count")
    except BrokerFull:
        return False
    return True


def _alarms() -> str:
    return rabbitmqctl("eval", "rabbit_alarm:get_alarms().")


@pytest.fixture
def memory_alarm() -> Iterator[Callable[[bool], None]]:
    """Raise (True) and clear (False) a memory alarm on the node; cleared whatever happens."""
    make_broker("rabbitmq", RABBITMQ_PORT)  # skips (fails under CI=true) without the node
    before = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    assert _alarms() == "[]", "the node is already in alarm: its tests would hang"

    def alarm(on: bool) -> None:
        rabbitmqctl("set_vm_memory_high_watermark", "0" if on else before)
        wait_for(lambda: (_alarms() != "[]") == on, timeout=30, what=f"the memory alarm {'on' if on else 'off'}")

    try:
        yield alarm
    finally:
        alarm(False)


@pytest.mark.serial  # every producer on the suite node is blocked meanwhile
def test_a_rabbitmq_memory_alarm_blocks_producers_with_a_clear_error_and_loses_nothing(
    memory_alarm: Callable[[bool], None], write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a daemon consuming from the node, and 20 items it handled
    broker = make_broker("rabbitmq", RABBITMQ_PORT)
    toml = stomp_toml(broker, receipt_timeout="2s", heartbeats=[10000, 500])
    config = write_config("sqlite:///unused.sqlite", toml, queue={"subsystem": "stomp"})
    start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    accepted: list[int] = []
    with statusq.connect(config) as qm:
        for n in range(20):
            qm.enqueue({"n": n}, "count")
            accepted.append(n)
    wait_for(lambda: len(read_records(record_file)) == 20, timeout=90, what="the first 20 items")

    # When the node raises a memory alarm, and a producer enqueues (on one connection, and on
    # a new one: RabbitMQ lets a connection's first SEND through before it blocks it)
    memory_alarm(True)
    unsure: list[int] = []  # refused with no receipt: the broker may still take them when it lets go
    with statusq.connect(config) as qm:
        for n in (20, 21, 22):
            try:
                qm.enqueue({"n": n}, "count")
            except BrokerFull as refused:
                # Then an enqueue that gets no receipt from a broker still beating says it is
                # throttling (within receipt_timeout, by construction), and is not sent again
                # elsewhere: a resend on a new connection would go through and be a copy
                assert "no receipt within 2s from a broker that is alive" in str(refused), refused
                assert "memory or disk alarm" in str(refused), refused
                unsure.append(n)
            else:
                accepted.append(n)
    assert unsure, "the memory alarm blocked no enqueue"

    # When the alarm clears, producers are served again and the daemon handles what came
    memory_alarm(False)
    with statusq.connect(config) as qm:
        for n in range(23, 43):
            qm.enqueue({"n": n}, "count")
            accepted.append(n)

    # Then every item whose enqueue returned is handled, and each item once: the throttled
    # ones at most once (taken when the node let go, or never)
    def handled() -> list[int]:
        return [r["n"] for r in read_records(record_file)]

    wait_for(lambda: set(accepted) <= set(handled()), timeout=120, what="every accepted item")
    seen = handled()
    assert len(seen) == len(set(seen)), "an item ran twice"
    assert set(seen) <= set(accepted) | set(unsure)


def test_the_suite_node_runs_with_the_limits_we_ship() -> None:
    # The shipped conf/rabbitmq.conf's memory alarm and message size are the node's; the free
    # disk limit is the suite's own (1 GB, for small CI disks), consumer_timeout RabbitMQ's default.
    make_broker("rabbitmq", RABBITMQ_PORT)
    shipped = dict(
        line.split(" = ", 1) for line in (ROOT / "conf" / "rabbitmq.conf").read_text().splitlines() if " = " in line
    )
    keys = "vm_memory_high_watermark, disk_free_limit, max_message_size, consumer_timeout"
    found = rabbitmqctl("eval", f"[element(2, application:get_env(rabbit, K)) || K <- [{keys}]].")
    memory, size, timeout = (
        shipped[k] for k in ("vm_memory_high_watermark.relative", "max_message_size", "consumer_timeout")
    )
    assert found == f'[{memory},"1GB",{size},{timeout}]', "restart the node: rabbitmq.sh stop && rabbitmq.sh ensure"
