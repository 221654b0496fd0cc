"""Priorities on every backend (issue #17): 1,000 priority-0 items queued, then 10 priority-9
items; a daemon (a subprocess, two workers) must handle all 10 long before the 1,000 are done:
each worker runs the urgent items it gets within its first ``prefetch + 10`` items (what its window
held before they could overtake, then the urgent ones).  The bound is per worker, not over the
merged order: a fast worker that has run its urgent share goes on with low items while a slower one
still works through the window it took first, and those low items are no fault of priority.

ActiveMQ needs ``prioritizedMessages`` (scripts/servers/activemq.sh and conf/activemq.xml set it);
the test runs a broker of its own started by that script, so it proves what we ship and start.
RabbitMQ needs its queues declared with ``x-max-priority`` ([queue.stomp] max_priority).  The
database claims by priority, then arrival.  The memory backend is shown in-process.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import statusq
from statusq import Item
from statusq.config import Config
from statusq.queues.base import Subscription
from statusq.queues.memory import MemoryQueueManager
from tests.conftest import read_records, run_cli
from tests.stomp import Broker, PrivateActiveMQ, make_broker, private_activemq, stomp_toml

pytestmark = pytest.mark.e2e

LOW, HIGH = 1000, 10
WORKERS = 2
PREFETCH = 10  # each worker's window: a broker's prefetch, a database claim's batch
#: A broker of this test's own (priority dispatch as activemq.sh configures it).
PRIORITY_BROKER = ("priority", 61663, 61666)


@pytest.fixture(scope="module")
def priority_activemq() -> Iterator[PrivateActiveMQ]:
    for broker in private_activemq(*PRIORITY_BROKER):
        broker.start()
        yield broker


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"])
def config(request: pytest.FixtureRequest, write_config, tmp_path: Path) -> tuple[Path, int]:
    """A config for the backend, and the prefetch window each worker holds there."""
    backend = request.param
    if backend in ("activemq", "rabbitmq"):
        if backend == "activemq":
            request.getfixturevalue("priority_activemq")
            broker: Broker = make_broker("activemq", PRIORITY_BROKER[1])
        else:
            broker = make_broker("rabbitmq")
        path = write_config(
            "sqlite:///unused.sqlite", stomp_toml(broker, prefetch=PREFETCH), queue={"subsystem": "stomp"}
        )
        return path, PREFETCH
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    # A claim takes a batch (highest priority first); while one worker runs the urgent items of
    # its batch the other runs what it holds: the same bound as a broker's window.
    return write_config(url, f"[queue.db]\nprefetch = {PREFETCH}\n"), PREFETCH


def test_priority_items_overtake_a_backlog(config, record_file) -> None:
    # Given 1,000 items at priority 0, then 10 at priority 9, queued before any worker runs
    path, prefetch = config
    with statusq.connect(path) as qm:
        qm.enqueue_many([Item({"n": n}, "count", priority=0) for n in range(LOW)])
        urgent = qm.enqueue_many([Item({"n": f"urgent-{n}"}, "count", priority=9) for n in range(HIGH)])

    # When a daemon with two workers works through them all
    result = run_cli("daemon", "--workers", str(WORKERS), "--idle-exit", "3", config=path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    # Then each ran once, and every worker ran its urgent items within its first prefetch + 10
    records = read_records(record_file)
    order = [r["id"] for r in records]
    assert len(order) == LOW + HIGH and len(set(order)) == LOW + HIGH
    by_worker: dict[int, list[str]] = {}
    for r in records:
        by_worker.setdefault(r["pid"], []).append(r["id"])
    bound = prefetch + HIGH
    for pid, ids in by_worker.items():
        positions = [n for n, i in enumerate(ids) if i in urgent]
        assert not positions or positions[-1] < bound, f"worker {pid} ran urgent items at {positions} (bound {bound})"


def test_priority_items_overtake_a_backlog_in_memory(tmp_path: Path) -> None:
    # The memory backend, in-process (it has no daemon of its own): claimed by priority, then arrival
    config = Config.model_validate({"var_dir": str(tmp_path), "queue": {"subsystem": "memory"}})
    with MemoryQueueManager(config) as qm:
        low = qm.enqueue_many([Item({"n": n}, "count", priority=0) for n in range(LOW)])
        urgent = qm.enqueue_many([Item({"n": n}, "count", priority=9) for n in range(HIGH)])
        consumer = qm.subscribe(Subscription())
        order = []
        while (delivery := consumer.fetch()) is not None:
            order.append(delivery.id)
            consumer.ack(delivery)
        consumer.close()
    assert order == urgent + low


def test_activemq_sh_restarts_a_broker_of_ours_that_runs_an_older_config(priority_activemq) -> None:
    # Given our broker running, but with a config an older activemq.sh wrote (no priority policy)
    servers = Path(os.environ.get("STATUSQ_SERVERS_DIR", "/var/tmp/statusq-servers"))  # as lib.sh
    base = servers / f"activemq-{PRIORITY_BROKER[0]}"
    conf = base / "conf" / "activemq.xml"
    current = conf.read_text()
    assert 'prioritizedMessages="true"' in current
    conf.write_text(re.sub(r"\s*<destinationPolicy>.*?</destinationPolicy>", "", current, flags=re.DOTALL))
    before = (base / "pid").read_text()

    # When `start` runs again, it restarts the broker with the current config
    priority_activemq.start()
    assert (base / "pid").read_text() != before
    assert conf.read_text() == current
    make_broker("activemq", PRIORITY_BROKER[1])  # it answers STOMP

    # And a second run finds nothing to do
    restarted = (base / "pid").read_text()
    priority_activemq.start()
    assert (base / "pid").read_text() == restarted
