"""Long jobs on a broker (issue 18): a handler that runs past RabbitMQ's consumer timeout
finishes once and is not redelivered while it runs; its worker SIGKILLed, it is not lost.

The suite's node gets a consumer timeout of 3 s for the test's length (and a channel tick of
1 s: RabbitMQ looks for timed-out deliveries once a tick, a minute by default), restored after.
Without ``long = true`` the 8-second item below is redelivered when its channel is closed at
about 3 s (checked by hand: it ran twice, as attempts 1 and 2).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from tests.conftest import read_records, start_daemon, wait_for
from tests.stomp import RABBITMQ_PORT, make_broker, rabbitmqctl, stomp_toml

pytestmark = [pytest.mark.e2e, pytest.mark.serial]  # the suite node's consumer timeout, for all

SETTINGS = ("consumer_timeout", "channel_tick_interval")


@pytest.fixture
def short_consumer_timeout() -> Iterator[None]:
    """consumer_timeout 3 s on the node for the channels opened meanwhile; restored after."""
    make_broker("rabbitmq", RABBITMQ_PORT)  # skips (fails under CI=true) without the node
    before = {k: rabbitmqctl("eval", f"application:get_env(rabbit, {k}).") for k in SETTINGS}
    rabbitmqctl("eval", "application:set_env(rabbit, consumer_timeout, 3000).")
    rabbitmqctl("eval", "application:set_env(rabbit, channel_tick_interval, 1000).")
    try:
        yield
    finally:
        for key, value in before.items():  # RabbitMQ's defaults if unset (a channel needs its tick)
            default = {"consumer_timeout": "1800000", "channel_tick_interval": "60000"}[key]
            was = value[4:-1] if value.startswith("{ok,") else default
            rabbitmqctl("eval", f"application:set_env(rabbit, {key}, {was}).")


def starts(record_file: Path, item: str) -> list[dict[str, object]]:
    return [r for r in read_records(record_file) if r["id"] == item]


def test_a_long_item_outlives_the_consumer_timeout_once_and_survives_a_killed_worker(
    short_consumer_timeout: None, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a daemon on a node whose consumer timeout is 3 s, its transport long
    broker = make_broker("rabbitmq", RABBITMQ_PORT)
    extra = stomp_toml(broker) + '\n[transports.count]\nlong = true\ntime_limit = "90s"\n'
    store = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    config = write_config(
        store, extra, queue={"subsystem": "stomp", "long_lease": "2s", "max_retries": 3, "claim_timeout": "120s"}
    )
    log = tmp_path / "daemon.log"
    start_daemon(config, "--workers", "1", log=log)

    # When an item runs 8 s, past the timeout, with quick ones queued behind it
    with statusq.connect(config) as qm:
        slow = qm.enqueue({"action": "sleep", "seconds": 8}, "count")
        quick = [qm.enqueue({"n": n}, "count") for n in range(5)]
    wait_for(lambda: all(starts(record_file, q) for q in quick), timeout=120, what="the quick items after the slow one")
    with statusq.connect(config) as qm:
        marker = qm.enqueue({"n": 99}, "count")
    wait_for(lambda: starts(record_file, marker), timeout=60, what="an item enqueued after all that")

    # Then it ran once, as attempt 1, and so did each of the others: nothing was redelivered
    assert [r["attempt"] for r in starts(record_file, slow)] == [1]
    assert all(len(starts(record_file, q)) == 1 for q in [*quick, marker])
    assert "PRECONDITION_FAILED" not in log.read_text().upper(), "the broker timed a delivery out"
    # (the marker's record is written as it starts, its row deleted once it has finished)
    wait_for(lambda: held(tmp_path) == 0, timeout=30, what="no finished long item held in the store")

    # When a worker running a long item is SIGKILLed
    with statusq.connect(config) as qm:
        lost = qm.enqueue({"action": "sleep", "seconds": 30}, "count")
    wait_for(lambda: starts(record_file, lost), timeout=60, what="the long item to start")
    wait_for(lambda: held(tmp_path) == 1, timeout=30, what="the long item held in the store")
    os.kill(int(str(starts(record_file, lost)[0]["pid"])), signal.SIGKILL)

    # Then once its lease (2 s) has run out, it is sent back from the store and runs again, as
    # attempt 2 (the broker, which had its ack, would never have given it back)
    wait_for(lambda: len(starts(record_file, lost)) >= 2, timeout=90, what="the lost long item to run again")
    assert [r["attempt"] for r in starts(record_file, lost)] == [1, 2]
    assert "redelivered" not in log.read_text(), "the broker gave back an item it had been acked for"


def held(tmp_path: Path) -> int:
    """Rows in the long-item table of the test's shared store."""
    with sqlite3.connect(tmp_path / "shared.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM statusq_long_items").fetchone()[0])
