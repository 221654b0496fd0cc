"""Delays held in the shared store (``[queue.stomp] delays``) on the real brokers: a delayed
item, a retry's backoff and an item the store holds while the broker is away all run, once, not
before their time; and where delays wait by default.  The full broker (what the store is for) is
in tests/e2e/test_broker_full.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from statusq.queues.db.delays import DelayStore
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

CASES = [
    ("activemq", "auto", True),  # the default on ActiveMQ: the store
    ("activemq", "broker", False),  # ActiveMQ's scheduler, as before 2026-12
    ("rabbitmq", "store", True),
    ("rabbitmq", "auto", False),  # the default on RabbitMQ: holding queues
]


@pytest.mark.parametrize(("kind", "delays", "in_store"), CASES)
def test_delayed_items_and_retries_run_once_not_before_their_time(
    kind: str,
    delays: str,
    in_store: bool,
    write_config: Callable[..., Path],
    record_file: Path,
    tmp_path: Path,
) -> None:
    # Given a broker, delays as configured, and a shared store of the test's own
    broker = make_broker(kind)
    shared = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    toml = stomp_toml(broker, delays=delays, delay_poll="100ms")
    queue = {"subsystem": "stomp", "max_retries": 1, "retry_delay": "1500ms", "retry_delay_max": "1500ms"}
    config = write_config(shared, toml, queue=queue)

    # When two items are delayed 2 s (one alone, one in a batch with one for now) and one fails
    with statusq.connect(config) as qm:
        enqueued = time.time()
        later = qm.enqueue({"n": 1}, "count", delay=2)
        batch = qm.enqueue_many([statusq.Item({"n": 2}, "count", delay=2), statusq.Item({"n": 3}, "count")])
        failing = qm.enqueue({"n": 4, "action": "raise"}, "count")

    # Then the delayed ones wait in the store, or not, as configured
    store = DelayStore.open(shared)
    try:
        assert store.count() == (2 if in_store else 0)
        # and `statusq status` says so (in the store, nothing late yet; nothing where the broker holds them)
        shown = run_cli("status", "--json", config=config)
        assert shown.returncode == 0, shown.stderr
        told = json.loads(shown.stdout)["delayed_in_store"]
        assert (told["waiting"], told["late"]) == ((2, 0) if in_store else (0, 0))

        # When a daemon runs them
        start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
        wait_for(lambda: len(read_records(record_file)) >= 5, timeout=90, what="four items and one retry to run")
        time.sleep(1.0)  # anything run twice would show by now

        # Then each ran once (the failing one twice: its retry), the delayed not before their time
        runs = read_records(record_file)
        by_id: dict[str, list[dict[str, object]]] = {}
        for record in runs:
            by_id.setdefault(str(record["id"]), []).append(record)
        assert sorted(by_id) == sorted([later, *batch, failing])
        assert [len(by_id[i]) for i in (later, *batch)] == [1, 1, 1]
        assert [r["attempt"] for r in by_id[failing]] == [1, 2]
        for item_id in (later, batch[0]):
            assert float(str(by_id[item_id][0]["at"])) >= enqueued + 2, "a delayed item ran early"
        first, second = (float(str(r["at"])) for r in by_id[failing])
        assert second >= first + 1.2, "a retry ran before its backoff (1.5 s, less at most 20% jitter) was over"
        # And the store is empty again: every row went to the broker and was deleted
        wait_for(lambda: store.count() == 0, timeout=30, what="the store to empty")
    finally:
        store.close()
