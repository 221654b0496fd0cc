"""Quorum queues on the suite's RabbitMQ node (``[queue.stomp] queue_type = "quorum"``).

Every queue of a test here has a unique basename, so none exists as a classic queue before:
the work queues (shards), the holding queues of retries and delays, and the dead-letter queue
are all declared quorum by statusq's own frames.  What quorum queues change is checked where
statusq depends on it: TTL and dead-lettering of holding queues (RabbitMQ 3.10+), redelivery
after a worker dies, and a queue declared classic earlier (refused, and said so by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import stomp

import statusq
from statusq.errors import QueueError
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.e2e.test_enqueueing import STAMP_PLUGIN
from tests.e2e.test_supervisor import daemons, ready_workers, stop
from tests.stomp import Broker, drain, make_broker, raw_connection, stomp_toml

pytestmark = pytest.mark.e2e

__all__ = ["daemons"]  # the fixture, imported for use here

QUORUM = {"x-queue-type": "quorum"}


@pytest.fixture
def broker() -> Broker:
    return make_broker("rabbitmq", queue_type="quorum")


def declared_type(broker: Broker, destination: str, ttl: int | None = None) -> str:
    """What RabbitMQ says an existing queue is: a SUBSCRIBE that declares it classic (with its
    other arguments: a holding queue's ``ttl``) is refused with "current is … 'quorum'" if it is
    quorum (nothing is created: it exists)."""
    args = {"x-queue-type": "classic"}
    if ttl is not None:
        base = broker.physical(destination.rsplit(".delay.", 1)[0]).removeprefix("/queue/")
        args |= {"x-message-ttl": str(ttl), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": base}
    said: dict[str, str] = {}
    answered = threading.Event()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_error(self, frame: Any) -> None:
            said["error"] = frame.body.decode() if isinstance(frame.body, bytes) else str(frame.body)
            answered.set()

        def on_receipt(self, frame: Any) -> None:
            answered.set()

    conn = raw_connection(broker.port)
    conn.set_listener("probe", Listener())
    conn.subscribe(broker.physical(destination), "probe", headers={**args, "receipt": "probe"})
    assert answered.wait(10), "RabbitMQ answered the probe with neither a receipt nor an ERROR"
    # The broker closes the connection after an ERROR: it may be gone between the check and the
    # DISCONNECT (seen under parallel load as EBADF from stomp.py's send)
    with contextlib.suppress(OSError, stomp.exception.StompException):
        if conn.is_connected():
            conn.disconnect()
    return "quorum" if re.search(r"current is (the value )?'quorum'", said.get("error", "")) else "classic"


def test_items_retries_delays_and_dead_letters_on_quorum_queues(
    broker: Broker, write_config: Callable[..., Path], plugin_dir: Path, record_file: Path
) -> None:
    # Given quorum queues, retries that wait 250 ms in a holding queue, and at most 2 retries
    (plugin_dir / "stamp.py").write_text(STAMP_PLUGIN)  # records when it ran an item
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker),
        queue={"subsystem": "stomp", "max_retries": 2, "retry_delay": "250ms", "retry_delay_max": "250ms"},
    )
    # and 60 good items for three sites, one that always fails, and one delayed by a second
    with statusq.connect(config) as qm:
        for n in range(60):
            qm.enqueue({"n": n}, "count", site=f"s{n % 3}.example")
        bad = qm.enqueue({"n": "bad", "action": "raise"}, "count", site="s0.example")
        enqueued = time.time()
        qm.enqueue({"tag": "later"}, "stamp", site="s1.example", delay=1.0)

    # When one worker runs until idle
    result = run_cli("daemon", "--workers", "1", "--idle-exit", "3", config=config, timeout=180)

    # Then every good item ran once, the delayed one not before its time
    assert result.returncode == 0, result.stderr[-3000:]
    records = [r for r in read_records(record_file) if "n" in r]
    counts = Counter(r["n"] for r in records)
    assert {n: counts[n] for n in range(60)} == dict.fromkeys(range(60), 1)
    [later] = [r for r in read_records(record_file) if r.get("tag") == "later"]
    assert later["attempt"] == 1 and later["at"] >= enqueued + 1.0
    # and the failing one ran three times, its retries through the 250 ms holding queue, then
    # went to the dead-letter queue with its reason
    assert [r["attempt"] for r in records if r["n"] == "bad"] == [1, 2, 3]
    letters = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert [(d["id"], d["attempts"]) for d in letters] == [(bad, 3)]
    assert "ValueError: boom bad (gave up after 3 attempts)" in letters[0]["error"]
    # and every queue that took part is a quorum queue: a shard, the holding queues, the DLQ
    shard = broker.group_queue("s0.example")
    assert declared_type(broker, shard) == "quorum"
    assert declared_type(broker, f"{shard}.delay.250", ttl=250) == "quorum"
    assert declared_type(broker, broker.group_queue("s1.example") + ".delay.1000", ttl=1000) == "quorum"
    dead = drain(broker.port, broker.physical(broker.basename + "dlq"), headers=QUORUM)
    assert [json.loads(body)["n"] for _headers, body in dead] == ["bad"]
    assert declared_type(broker, broker.basename + "dlq") == "quorum"


def test_a_sigkilled_worker_loses_nothing_on_quorum_queues(
    broker: Broker, write_config: Callable[..., Path], record_file: Path, tmp_path: Path, daemons: list
) -> None:
    # Given 400 items of 10 ms on quorum queues, one worker, a prefetch window of 20
    prefetch = 20
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, prefetch=prefetch),
        queue={"subsystem": "stomp", "max_retries": 5},
        daemon={"spawn_delay": "50ms"},
    )
    lines = "\n".join(json.dumps({"n": n, "action": "sleep", "seconds": 0.01}) for n in range(400))
    done = run_cli("enqueue", "--lines", "count", "-", config=config, input=lines)
    assert done.returncode == 0, done.stderr
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    daemons.append(daemon)
    wait_for(lambda: len(read_records(record_file)) >= 50, timeout=90, what="work under way")

    # When the busy worker is SIGKILLed mid-run
    [worker] = [w for w in ready_workers(config, daemon) if w.state in ("busy", "idle")]
    os.kill(worker.pid, signal.SIGKILL)

    # Then its replacement gets what the dead connection held, and every item is handled
    wait_for(lambda: len({r["n"] for r in read_records(record_file)}) == 400, timeout=120, what="every item")
    wait_for(lambda: all(w.state == "idle" for w in ready_workers(config, daemon)), what="the worker idle")
    assert stop(daemon) == 0
    records = read_records(record_file)
    counts = Counter(r["n"] for r in records)
    assert sorted(counts) == list(range(400)), "an item was lost"
    # Run twice at most: the unacked window the dead connection held (its prefetch: the item in
    # hand, the handled ones whose batched ACK had not gone out, the ones not yet started)
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= prefetch, f"{duplicates} duplicates for one kill"
    assert any(r["attempt"] > 1 and r["pid"] != worker.pid for r in records), "no redelivery was counted"
    letters = run_cli("deadletters", "list", "--json", config=config)
    assert letters.returncode == 0 and json.loads(letters.stdout) == [], letters.stderr


def test_a_queue_declared_classic_is_refused_by_name(write_config: Callable[..., Path], tmp_path: Path) -> None:
    # Given a basename whose queues a classic statusq declared (with its x-max-priority)
    classic = make_broker("rabbitmq")
    classic_config = write_config("sqlite:///unused.sqlite", stomp_toml(classic), queue={"subsystem": "stomp"})
    with statusq.connect(classic_config) as qm:
        qm.enqueue({"n": 1}, "count", site="s.example")
    quorum = Broker(classic.name, classic.port, classic.basename, classic.control, "quorum")
    config = tmp_path / "quorum.toml"
    config.write_text(classic_config.read_text().replace("[queue.stomp]\n", '[queue.stomp]\nqueue_type = "quorum"\n'))

    # When statusq is asked for quorum queues there
    with statusq.connect(config) as qm, pytest.raises(QueueError) as refused:
        qm.enqueue({"n": 2}, "count", site="s.example")

    # Then the enqueue fails saying which queue is classic, and how to get out
    physical = quorum.physical(quorum.group_queue("s.example")).removeprefix("/queue/")
    assert f"queue '{physical}' exists as a classic queue" in str(refused.value)
    assert "cannot change a queue's type" in str(refused.value)
    assert declared_type(quorum, quorum.group_queue("s.example")) == "classic"
