"""Unique keys end to end, on every backend that runs a daemon (SQLite, PostgreSQL, ActiveMQ,
RabbitMQ; the keys of the two brokers live in the config's database): an enqueue with a live
key adds nothing; ``unique_for`` keeps the key after success; a duplicate delivery of a keyed
item that succeeded (a crash after its handler, before its ack) is acked unrun."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

import statusq
from statusq.item import Message
from statusq.queues.db import DBQueueManager
from statusq.queues.db.schema import items
from statusq.queues.keys import KEY_HEADER, UNIQUE_FOR_HEADER
from statusq.queues.stomp import StompQueueManager, wire
from tests.conftest import run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"]


@pytest.fixture(params=BACKENDS)
def config(
    request: pytest.FixtureRequest, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> Path:
    backend = request.param
    if backend in ("activemq", "rabbitmq"):
        # Keys in the config's database: a file of this test's own.
        db = f"sqlite:///{tmp_path / 'keys.sqlite'}"
        return write_config(db, stomp_toml(make_broker(backend)), queue={"subsystem": "stomp", "max_retries": 0})
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url, queue={"max_retries": 0})


def runs(record_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.exists() else []


def test_a_live_key_adds_nothing_and_unique_for_holds_it_after_success(
    config: Path, record_file: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex  # keys of this test's own: a PostgreSQL database outlives the test
    with statusq.connect(config) as qm:
        # Given two enqueues of one key before any worker runs, and one of another key
        first = qm.enqueue({"n": 1}, "count", site="a.example", key=f"{tag}:cron", unique_for="10m")
        assert qm.enqueue({"n": 2}, "count", site="a.example", key=f"{tag}:cron") == first
        plain = qm.enqueue({"n": 3}, "count", site="a.example", key=f"{tag}:plain")  # unique_for 0
        # When a daemon runs what was queued
        daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
        try:
            wait_for(lambda: {r["n"] for r in runs(record_file)} == {1, 3}, what="items 1 and 3")
            # Then the key with unique_for is still taken, and the one without is free again
            assert qm.enqueue({"n": 4}, "count", site="a.example", key=f"{tag}:cron") == first
            again = qm.enqueue({"n": 5}, "count", site="a.example", key=f"{tag}:plain")
            assert again != plain
            wait_for(lambda: 5 in {r["n"] for r in runs(record_file)}, what="item 5")
            time.sleep(1.0)  # room for a wrong run of item 2 or 4 to show
        finally:
            daemon.terminate()
            assert daemon.wait(timeout=60) == 0
    assert sorted(r["n"] for r in runs(record_file)) == [1, 3, 5]


def deliver_again(qm: statusq.QueueManager, item_id: str, key: str, payload: dict[str, Any]) -> None:
    """What a backend does after a worker died between an item's handler and its ack: the same
    item, same id, offered again (made here by hand, the crash being hard to time)."""
    body = json.dumps(payload).encode()
    headers = {KEY_HEADER: key, UNIQUE_FOR_HEADER: "3600"}
    if isinstance(qm, DBQueueManager):
        message = Message("a.example", "count", body, "application/json", headers, 0)
        row = {**qm._row(message, time.time()), "id": int(item_id)}

        def acked() -> bool:  # the handler's record is written just before the ack
            with qm.engine.connect() as conn:
                return conn.execute(select(items.c.id).where(items.c.id == int(item_id))).first() is None

        wait_for(acked, what="the item's ack")
        with qm.engine.begin() as conn:
            conn.execute(insert(items).values(row))
        return
    assert isinstance(qm, StompQueueManager)
    out = {**headers, **wire.new_headers("a.example", "count", "application/json"), wire.ID: item_id}
    qm.send(qm.destination_of("count", "a.example"), body, out)


def test_a_duplicate_delivery_of_a_keyed_item_that_succeeded_is_not_run(
    config: Path, record_file: Path, tmp_path: Path
) -> None:
    key = f"{uuid.uuid4().hex}:once"
    with statusq.connect(config) as qm:
        item_id = qm.enqueue({"n": 1}, "count", site="a.example", key=key, unique_for="1h")
        daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
        try:
            wait_for(lambda: len(runs(record_file)) == 1, what="the item's run")
            # When the same item is delivered again, then an unkeyed item after it
            deliver_again(qm, item_id, key, {"n": 1})
            qm.enqueue({"n": 2}, "count", site="a.example")
            wait_for(lambda: 2 in {r["n"] for r in runs(record_file)}, what="the item after the duplicate")
            wait_for(lambda: "already done" in (tmp_path / "daemon.log").read_text(), what="the duplicate's log line")
        finally:
            daemon.terminate()
            assert daemon.wait(timeout=60) == 0
    # Then the duplicate was not run
    assert [r["n"] for r in runs(record_file)] == [1, 2]


def test_the_cli_enqueues_with_a_key(config: Path) -> None:
    key = f"{uuid.uuid4().hex}:cli"
    first = run_cli("enqueue", "--key", key, "--unique-for", "10m", "count", '{"n": 1}', config=config)
    again = run_cli("enqueue", "--key", key, "count", '{"n": 2}', config=config)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert first.stdout == again.stdout
    bad = run_cli("enqueue", "--key", "x" * 201, "count", "{}", config=config)
    assert bad.returncode == 65 and "key: is 201 bytes long; at most 200" in bad.stderr
