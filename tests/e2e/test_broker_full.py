"""A full broker pushes back instead of dying (issue 18): the limits scripts/servers/activemq.sh
writes (``<systemUsage>`` with ``sendFailIfNoSpaceAfterTimeout``), filled on purpose.

The broker here is the test's own, with limits small enough to reach in seconds (a 3 MB store in
1 MB journal files); the shipped and started brokers have the same policy at full size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from statusq import BrokerFull
from tests.conftest import read_records, start_daemon, wait_for
from tests.stomp import PrivateActiveMQ, make_broker, private_activemq, stomp_toml

pytestmark = pytest.mark.e2e

PAD = "x" * 20_000  # a 20 KB item: the store fills after about 150 of them
LIMITS = {
    "ACTIVEMQ_STORE_LIMIT": "3 mb",
    "ACTIVEMQ_JOURNAL_FILE": "1mb",  # the store limit cannot be below one journal file
    "ACTIVEMQ_MEMORY_LIMIT": "2 mb",
    "ACTIVEMQ_TEMP_LIMIT": "64 mb",  # nor the temp limit below the temp store's 32 MB file
    "ACTIVEMQ_SEND_FAIL_MS": "1000",
    "ACTIVEMQ_STORE_CLEANUP_MS": "1000",  # drained journal files freed within a second, not 30
}


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[PrivateActiveMQ]:
    # A store of its own in tmp_path: empty at every run, whatever an earlier run left.
    for broker in private_activemq("full", 61671, 61672, tmp_path / "store", LIMITS):
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


def _takes(config: Path) -> bool:
    try:
        with statusq.connect(config) as qm:
            qm.enqueue({"n": -1, "pad": PAD}, "count")
    except BrokerFull:
        return False
    return True
