"""A broker that freezes (SIGSTOP: alive to the kernel, silent to us) is detected by heart-beats,
not waited on forever; when it thaws, the worker reconnects and every item is handled (issue 18).

A private ActiveMQ on its own ports, so freezing it stops no other test.  The delays printed are
what the numbers in docs/guarantees.md come from; nothing here asserts a duration.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from tests.conftest import read_records, start_daemon, wait_for
from tests.history import assert_reruns_per_worker_within
from tests.stomp import PrivateActiveMQ, make_broker, private_activemq, stomp_toml

pytestmark = pytest.mark.e2e

HEARTBEAT_MS = 1000


@pytest.fixture
def broker() -> Iterator[PrivateActiveMQ]:
    for one in private_activemq("frozen", 61635, 61645):
        one.start()
        yield one


def stomp_config(write_config: Callable[..., Path]) -> Path:
    names = make_broker("activemq")  # unique destinations; the server is the private one
    toml = stomp_toml(
        names, servers=["127.0.0.1:61635"], prefetch=20, heartbeats=[HEARTBEAT_MS, HEARTBEAT_MS], receipt_timeout="3s"
    )
    return write_config("sqlite:///unused.sqlite", toml, queue={"subsystem": "stomp", "max_retries": 10})


def broker_pid(broker: PrivateActiveMQ) -> int:
    return int(Path(f"/var/tmp/statusq-servers/activemq-{broker.name}/pid").read_text())


def test_a_frozen_broker_is_detected_by_heartbeats_and_nothing_is_lost(
    broker: PrivateActiveMQ, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given 300 items on the private broker and a daemon working through them, heart-beats of 1 s
    config = stomp_config(write_config)
    with statusq.connect(config) as qm:
        for n in range(300):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 0.01}, "count")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "15", log=log)
    wait_for(lambda: len(read_records(record_file)) >= 30, what="work under way")

    # When the broker freezes
    pid = broker_pid(broker)
    os.kill(pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        # Then the worker's heart-beat check notices the silence by itself
        wait_for(lambda: "heartbeat timeout on consumer" in log.read_text(), timeout=60, what="heart-beat timeout")
        silent = re.search(r"heartbeat timeout: diff_receive=([0-9.]+)", log.read_text())
        print(
            f"\nsilence detected {time.monotonic() - frozen:.2f}s after the freeze, "
            f"{float(silent.group(1)) if silent else float('nan'):.2f}s after the broker's last frame "
            f"(heart-beat {HEARTBEAT_MS} ms)"
        )
        time.sleep(3 * HEARTBEAT_MS / 1000)  # reconnects meanwhile find a broker that never answers
    finally:
        os.kill(pid, signal.SIGCONT)

    # And once it thaws, the worker is back and every item is handled; duplicates at most the
    # prefetch window and the item in hand
    assert daemon.wait(timeout=240) == 0
    counts = Counter(r["n"] for r in read_records(record_file))
    assert set(counts) == set(range(300))
    assert_reruns_per_worker_within(read_records(record_file), 21)
    text = log.read_text()
    assert text.count("consumer connected") >= 2, "it reconnected"
    assert "wrong login" not in text


def test_a_frozen_worker_is_dropped_by_the_broker_and_its_items_go_to_another(
    broker: PrivateActiveMQ, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given 300 items and two workers taking turns at them
    config = stomp_config(write_config)
    with statusq.connect(config) as qm:
        for n in range(300):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 0.01}, "count")
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", "--idle-exit", "15", log=log)
    wait_for(lambda: len(read_records(record_file)) >= 30, what="work under way")
    workers = Path(f"/proc/{daemon.pid}/task/{daemon.pid}/children").read_text().split()
    assert len(workers) == 2

    # When one worker freezes holding its prefetched items (SIGSTOP: no heart-beats, no acks)
    frozen_pid = int(workers[0])
    os.kill(frozen_pid, signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        # Then the broker notices the silent consumer and hands its items to the other worker:
        # every item is handled while the first is still frozen
        wait_for(lambda: {r["n"] for r in read_records(record_file)} >= set(range(300)), timeout=120, what="all items")
        print(f"\nall items handled {time.monotonic() - frozen:.2f}s after the freeze (heart-beat {HEARTBEAT_MS} ms)")
    finally:
        print(log.read_text()[-4000:])  # shown if it failed: who held what, who was killed
        with contextlib.suppress(ProcessLookupError):  # gone: the log says why; the wait's error is the one to see
            os.kill(frozen_pid, signal.SIGCONT)

    # And the thawed worker finds its connection gone and carries on; duplicates are at most what
    # it held (the prefetch window and the item in hand)
    assert daemon.wait(timeout=240) == 0
    counts = Counter(r["n"] for r in read_records(record_file))
    assert set(counts) == set(range(300))
    assert_reruns_per_worker_within(read_records(record_file), 21)
