"""The producer API end to end, on every backend that runs a daemon (SQLite, PostgreSQL, ActiveMQ,
RabbitMQ): delays and etas held by the backend, batches all or nothing, expiry dead-lettered with
its reason.  The daemon runs as a subprocess; waits poll for the outcome, and elapsed times are
only ever checked as lower bounds ("not before"), never as upper ones."""

from __future__ import annotations

import json
import queue
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq import InvalidArgument, Item
from statusq.defaults import DEFAULT_SITE
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import Broker, make_broker, raw_connection, stomp_toml

pytestmark = pytest.mark.e2e

STAMP_PLUGIN = '''
"""Records each item it runs, with the wall-clock time it started."""
import json, os, time
from statusq import QueueHandler

class Stamp(QueueHandler):
    def handle(self, item):
        line = json.dumps({"id": item.id, "tag": item.payload["tag"], "at": time.time(), "attempt": item.attempt})
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\\n").encode())
        finally:
            os.close(fd)
        return True

def register(api):
    api.register_handler("stamp", Stamp)
'''

DAY = 86400.0
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(backend: str) -> Broker | None:
    return make_broker(backend) if backend in ("activemq", "rabbitmq") else None


@pytest.fixture
def config(
    backend: str,
    broker: Broker | None,
    request: pytest.FixtureRequest,
    write_config: Callable[..., Path],
    plugin_dir: Path,
    record_file: Path,
    tmp_path: Path,
) -> Path:
    """A config for the backend, with the stamp plugin and no retries."""
    (plugin_dir / "stamp.py").write_text(STAMP_PLUGIN)
    if broker is not None:
        return write_config(
            "sqlite:///unused.sqlite", stomp_toml(broker), queue={"subsystem": "stomp", "max_retries": 0}
        )
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url, queue={"max_retries": 0})


def stamps(record_file: Path) -> dict[str, dict[str, Any]]:
    """What the stamp handler ran, by tag."""
    return {r["tag"]: r for r in read_records(record_file)}


@pytest.fixture
def daemon(config: Path, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[str]]]:
    """Starts `statusq daemon` (one worker) when called; stopped with SIGTERM afterwards."""
    started = []

    def start() -> subprocess.Popen[str]:
        started.append(start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log"))
        return started[-1]

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=60)


def dead_letters(config: Path) -> list[dict[str, Any]]:
    result = run_cli("deadletters", "list", "--json", config=config)
    assert result.returncode == 0, result.stderr
    letters: list[dict[str, Any]] = json.loads(result.stdout)
    return letters


def test_delayed_items_are_not_run_before_their_time_and_are_run_after(config, daemon, record_file) -> None:
    # Given a worker, and three items: one delayed 1.5 s, one with an eta 1.5 s ahead, one now
    daemon()
    with statusq.connect(config) as qm:
        enqueued = time.time()
        delayed = qm.enqueue({"tag": "delay"}, "stamp", delay=1.5)
        eta = qm.enqueue({"tag": "eta"}, "stamp", eta=datetime.now(UTC) + timedelta(seconds=1.5))
        batch = qm.enqueue_many([Item({"tag": "batch-delay"}, "stamp", delay="1500ms")])
        now = qm.enqueue({"tag": "now"}, "stamp")

    # When the worker has run them all
    wait_for(lambda: len(stamps(record_file)) == 4, timeout=90, what="all four items to run")

    # Then each ran once, and the delayed ones not before their time
    ran = stamps(record_file)
    assert {ran[tag]["id"] for tag in ran} == {delayed, eta, *batch, now}
    for tag in ("delay", "eta", "batch-delay"):
        assert ran[tag]["at"] >= enqueued + 1.5, f"{tag} ran {enqueued + 1.5 - ran[tag]['at']:.3f}s early"
        assert ran[tag]["attempt"] == 1


def test_a_batch_is_all_or_nothing_and_returns_the_ids_in_order(config, daemon, record_file) -> None:
    # Given a good batch of 50, and a batch of 50 with one invalid item
    good = [Item({"tag": f"good-{n}"}, "stamp", site=f"s{n % 3}.example") for n in range(50)]
    bad = [Item({"tag": f"bad-{n}"}, "stamp") for n in range(50)]
    bad[37] = Item({"tag": "bad-37"}, "stamp", eta=datetime.now(UTC) - timedelta(hours=1))
    with statusq.connect(config) as qm:
        ids = qm.enqueue_many(good)
        with pytest.raises(InvalidArgument, match=r"items\[37\]: eta: .* in the past"):
            qm.enqueue_many(bad)
        with pytest.raises(InvalidArgument, match="a batch of none"):
            qm.enqueue_many([])

    # When a worker runs what was queued
    daemon()
    wait_for(lambda: len(stamps(record_file)) >= 50, timeout=90, what="the good batch to run")
    time.sleep(1.0)  # anything of the bad batch would have come by now (it would be queued behind)

    # Then exactly the good batch ran, each item under the id it was given, each site's in order
    # (across sites they take turns: on STOMP each site's shard has its own, docs/flow-control.md)
    assert len(ids) == 50 and len(set(ids)) == 50
    ran = stamps(record_file)
    assert sorted(ran) == sorted(f"good-{n}" for n in range(50)), "nothing of the bad batch"
    assert [ran[f"good-{n}"]["id"] for n in range(50)] == ids
    for site in range(3):
        mine = [ran[f"good-{n}"] for n in range(site, 50, 3)]
        assert sorted(mine, key=lambda r: r["at"]) == mine


def test_enqueue_lines_sends_batches(config, daemon, record_file) -> None:
    # Given 2,500 JSON lines (three batches of at most 1,000), delayed and expiring from the CLI
    lines = "\n".join(json.dumps({"tag": f"line-{n}"}) for n in range(2500))
    result = run_cli("enqueue", "--lines", "--delay", "1s", "--expires", "1h", "stamp", "-", config=config, input=lines)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "enqueued 2500 item(s)"
    bad = run_cli("enqueue", "--lines", "--delay", "-1", "stamp", "-", config=config, input='{"tag": "x"}\n')
    assert bad.returncode == 65 and "delay: " in bad.stderr

    # When a worker runs them, then each ran once
    daemon()
    wait_for(lambda: len(stamps(record_file)) >= 2500, timeout=180, what="2,500 lines to run")
    assert sorted(stamps(record_file)) == sorted(f"line-{n}" for n in range(2500))


def test_an_item_not_started_before_it_expires_is_dead_lettered_as_expired(config, daemon, record_file) -> None:
    # Given an item that expires in 1 s and one that expires in an hour, with no worker running
    with statusq.connect(config) as qm:
        stale = qm.enqueue({"tag": "stale"}, "stamp", expires=1)
        [fresh] = qm.enqueue_many([Item({"tag": "fresh"}, "stamp", expires=timedelta(hours=1))])
    time.sleep(1.5)

    # When a worker starts afterwards
    daemon()
    wait_for(lambda: "fresh" in stamps(record_file), timeout=90, what="the fresh item to run")

    # Then the fresh one ran, and the stale one was not run but dead-lettered with the reason
    def the_stale_letter() -> list[dict[str, Any]]:
        return [d for d in dead_letters(config) if d["id"] == stale]

    wait_for(the_stale_letter, timeout=30, what="the expired item's dead letter")
    [letter] = the_stale_letter()
    assert letter["error"].startswith("expired: not started by "), letter["error"]
    assert stamps(record_file)["fresh"]["id"] == fresh
    assert "stale" not in stamps(record_file)
    # And an operator who requeues it has it run: the requeue drops the expiry
    assert run_cli("deadletters", "retry", stale, config=config).returncode == 0
    wait_for(lambda: "stale" in stamps(record_file), timeout=60, what="the requeued item to run")


def test_an_eta_far_ahead_is_held_by_the_backend(backend, broker, config, daemon, record_file, request) -> None:
    # Given an item for tomorrow (an hour and more: on RabbitMQ past its longest holding queue)
    with statusq.connect(config) as qm:
        started = time.time()
        qm.enqueue({"tag": "tomorrow"}, "stamp", eta=datetime.fromtimestamp(started + DAY, UTC))
        qm.enqueue({"tag": "now"}, "stamp")
    request.addfinalizer(lambda: cleanup(broker, started, time.time(), DAY))

    # When a worker runs for a while, then it ran only the item for now
    daemon()
    wait_for(lambda: "now" in stamps(record_file), timeout=90, what="the item for now to run")
    time.sleep(1.0)
    assert sorted(stamps(record_file)) == ["now"]
    if backend in ("sqlite", "postgresql"):  # a broker's counts are the broker's to tell
        with statusq.connect(config) as qm:
            [row] = qm.backlog() or []
            assert (row.ready, row.delayed) == (0, 1)


# -- 100,000 items delayed: held by the backend, not by a worker ----------------------------------

MANY = 100_000
#: An hour and a bit, odd on purpose: on ActiveMQ the test removes the scheduled jobs due within
#: its window afterwards, and no other test schedules anything this far ahead to the second.
FAR = 3600 + 13 * 60 + 17.0


def worker_rss_mb(supervisor: int) -> float:
    [worker] = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    for line in Path(f"/proc/{worker}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def consume_all(port: int, destination: str, headers: dict[str, str] | None = None) -> int:
    """Consume (auto-ack) what a destination holds, until it is quiet for 3 s; how many."""
    import stomp

    got: queue.SimpleQueue[int] = queue.SimpleQueue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            got.put(1)

    conn = raw_connection(port)
    conn.set_listener("consume", Listener())
    window = {"activemq.prefetchSize": "5000", "prefetch-count": "5000"}
    conn.subscribe(destination, "consume", ack="auto", headers={**window, **(headers or {})})
    count = 0
    try:
        while True:
            got.get(timeout=3.0)
            count += 1
    except queue.Empty:
        pass
    conn.disconnect()
    return count


def forget_scheduled(port: int, start: float, end: float) -> int:
    """Remove the ActiveMQ scheduler's jobs due between ``start`` and ``end`` (epoch seconds);
    how many a browse of that window finds afterwards (0)."""
    window = {
        "AMQ_SCHEDULER_ACTION_START_TIME": str(int(start * 1000)),
        "AMQ_SCHEDULER_ACTION_END_TIME": str(int(end * 1000)),
    }
    management = "/topic/ActiveMQ.Scheduler.Management"
    reply = f"/queue/browse-{int(time.time() * 1000)}"
    conn = raw_connection(port)
    conn.send(management, b"", headers={"AMQ_SCHEDULER_ACTION": "REMOVEALL", **window})
    conn.send(management, b"", headers={"AMQ_SCHEDULER_ACTION": "BROWSE", "reply-to": reply, **window})
    conn.disconnect()
    return consume_all(port, reply)


def cleanup(broker: Broker | None, started: float, ended: float, delay: float = FAR) -> None:
    """Leave nothing delayed on a shared broker (a database is the test's own): the items
    enqueued between ``started`` and ``ended`` with ``delay`` (over an hour)."""
    if broker is None:
        return
    if broker.name == "activemq":
        assert forget_scheduled(broker.port, started + delay - 1, ended + delay + 5) == 0
        return
    # The items are the default site's: in its shard of the group
    main = broker.physical(broker.group_queue(DEFAULT_SITE)).removeprefix("/queue/")
    ttl = "3600000"  # an hour: the longest holding queue
    holding = {"x-message-ttl": ttl, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": main}
    consume_all(broker.port, f"/queue/{main}.delay.{ttl}", holding)


# Alone: 100,000 scheduled messages load the shared broker enough that, beside the other tests,
# the broker went quiet past its heartbeats and throttled this test's own producer (seen once)
@pytest.mark.serial
def test_100000_delayed_items_leave_an_idle_workers_memory_alone_and_none_runs_early(
    backend, broker, config, daemon, record_file
) -> None:
    # Given a running worker that handled one item, and its memory then
    proc = daemon()
    with statusq.connect(config) as qm:
        qm.enqueue({"tag": "probe-0"}, "stamp")
        wait_for(lambda: "probe-0" in stamps(record_file), timeout=120, what="the worker's first item")
        time.sleep(1.0)
        before = worker_rss_mb(proc.pid)

        # When 100,000 items delayed by over an hour are enqueued (batches of 5,000), then one for now
        started = time.time()
        try:
            for first in range(0, MANY, 5000):
                qm.enqueue_many([Item({"tag": f"later-{n}"}, "stamp", delay=FAR) for n in range(first, first + 5000)])
            ended = time.time()
            qm.enqueue({"tag": "probe-1"}, "stamp")

            # Then the worker runs the item for now, its memory has not grown by 10 MB, and none
            # of the delayed items ran
            wait_for(lambda: "probe-1" in stamps(record_file), timeout=120, what="the item after the 100,000")
            time.sleep(2.0)
            after = worker_rss_mb(proc.pid)
            rate = MANY / (ended - started)
            print(f"{backend}: enqueue_many {rate:,.0f} items/s; worker RSS {before:.1f} -> {after:.1f} MB")
            assert after - before < 10, f"worker RSS grew from {before:.1f} to {after:.1f} MB"
            assert sorted(stamps(record_file)) == ["probe-0", "probe-1"]
        finally:
            cleanup(broker, started, time.time())
