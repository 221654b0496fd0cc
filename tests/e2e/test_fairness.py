"""Fairness without configuration (issue #17): a site that floods must not starve the others, on
every backend, with no ``breakout`` entry.  10,000 items for site A are queued (one batch), then
one for site B; a daemon (a subprocess, two workers) must handle B's item before 10% of A's
flood is done.

The database claims in turns across sites (statusq/queues/db/turns.py); STOMP spreads a group's
items over shard destinations by a hash of the site and a worker takes from each in turn
(statusq/queues/stomp/destinations.py), and a worker moves a site it counts hot to a destination
of its own, so a site in the flooder's own shard is reached too (statusq/queues/stomp/hot.py); the
memory backend takes sites in turns, shown in-process.
"""

from __future__ import annotations

import os
import signal
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from statusq import Item
from statusq.config import Config
from statusq.defaults import STOMP_SHARDS
from statusq.queues.base import Subscription
from statusq.queues.memory import MemoryQueueManager
from statusq.queues.stomp import wire
from statusq.queues.stomp.destinations import Destinations, shard_of
from statusq.queues.stomp.link import StompLink
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

FLOOD = 10_000
#: On STOMP the two are in different shards of the four (a site sharing the flooder's shard
#: waits behind it: docs/flow-control.md): checked below, so the premise is explicit.
FLOODER, OTHER = "busy.example", "calm.example"
BOUND = FLOOD // 10  # B's item must come before this many of A's are done


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"])
def config(request: pytest.FixtureRequest, write_config: Callable[..., Path], tmp_path: Path) -> Path:
    backend = request.param
    if backend in ("activemq", "rabbitmq"):
        broker = make_broker(backend)
        return write_config("sqlite:///unused.sqlite", stomp_toml(broker), queue={"subsystem": "stomp"})
    url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    return write_config(url)


def test_the_two_sites_are_in_different_shards() -> None:
    assert shard_of(FLOODER, STOMP_SHARDS) != shard_of(OTHER, STOMP_SHARDS)


def neighbour_of(site: str) -> str:
    """The first of ``quiet0.example``, ``quiet1.example``, … in ``site``'s shard (of the default
    four): computed with the producers' own hash, so the premise cannot drift from the code."""
    return next(
        f"quiet{n}.example"
        for n in range(1000)
        if shard_of(f"quiet{n}.example", STOMP_SHARDS) == shard_of(site, STOMP_SHARDS)
    )


def test_a_flooding_site_does_not_starve_another(config: Path, record_file: Path) -> None:
    assert_flood_does_not_starve(config, record_file, OTHER)


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_a_flooding_site_does_not_starve_a_site_in_its_own_shard(
    backend: str, write_config: Callable[..., Path], record_file: Path
) -> None:
    # The quiet site hashes to the flooder's shard: it is reached because the worker moves the
    # flooder's items, once it counts it hot, to a destination of the flooder's own
    # (statusq/queues/stomp/hot.py); before that, it waited behind the whole flood.
    quiet_site = neighbour_of(FLOODER)
    assert shard_of(quiet_site, STOMP_SHARDS) == shard_of(FLOODER, STOMP_SHARDS)
    broker = make_broker(backend)
    config = write_config("sqlite:///unused.sqlite", stomp_toml(broker), queue={"subsystem": "stomp"})
    assert_flood_does_not_starve(config, record_file, quiet_site)


def assert_flood_does_not_starve(config: Path, record_file: Path, quiet_site: str) -> None:
    # Given a flood of 10,000 items for one site, then one item for another, all queued before
    # any worker runs (no breakout, no fairness setting: the defaults)
    with statusq.connect(config) as qm:
        qm.enqueue_many([Item({"n": n}, "count", site=FLOODER) for n in range(FLOOD)])
        (quiet,) = qm.enqueue_many([Item({"n": "quiet"}, "count", site=quiet_site)])

    # When a daemon with two workers works through them all (and exits once idle for 10 s: 3 s
    # ended a CI run with 8,628 items still queued, 0 lost, the shared broker busy with the
    # parallel tests)
    result = run_cli("daemon", "--workers", "2", "--idle-exit", "10", config=config, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    # Then each ran once, and the quiet site's item before 10% of the flood was done
    order = [r["id"] for r in read_records(record_file)]
    assert len(order) == FLOOD + 1 and len(set(order)) == FLOOD + 1
    position = order.index(quiet)
    print(f"the quiet site's item was handled {position}th of {FLOOD + 1}")
    assert position < BOUND, f"the quiet site's item was handled {position}th, after {position} flood items"


def test_a_flooding_site_does_not_starve_another_in_memory(tmp_path: Path) -> None:
    # The memory backend, in-process: sites in turns, so the quiet site's item comes second
    config = Config.model_validate({"var_dir": str(tmp_path), "queue": {"subsystem": "memory"}})
    with MemoryQueueManager(config) as qm:
        flood = qm.enqueue_many([Item({"n": n}, "count", site=FLOODER) for n in range(FLOOD)])
        (quiet,) = qm.enqueue_many([Item({"n": "quiet"}, "count", site=OTHER)])
        consumer = qm.subscribe(Subscription())
        order = []
        # Until the quiet item came, or the bound did (a claim scans every item here: all
        # 10,000 of them would take 20 s, and what follows the quiet item proves nothing more)
        while quiet not in order and len(order) < BOUND and (delivery := consumer.fetch()) is not None:
            order.append(delivery.id)
            consumer.ack(delivery)
        third = consumer.fetch()  # and then the flood again, oldest first
        consumer.close()
    assert order == [flood[0], quiet]
    assert third is not None and third.id == flood[1]


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_workers_with_shards_drain_what_unsharded_producers_sent(
    backend: str, write_config: Callable[..., Path], tmp_path: Path, record_file: Path
) -> None:
    # Given items sent by a producer with the unsharded layout (an older statusq, shards = 1)
    broker = make_broker(backend)
    old = write_config("sqlite:///unused.sqlite", stomp_toml(broker, shards=1), queue={"subsystem": "stomp"})
    with statusq.connect(old) as qm:
        ids = qm.enqueue_many([Item({"n": n}, "count", site=f"s{n}.example") for n in range(20)])

    # When a daemon with the default four shards runs
    new = old.with_name("sharded.toml")
    new.write_text(old.read_text().replace("shards = 1\n", ""))
    result = run_cli("daemon", "--workers", "1", "--idle-exit", "3", config=new, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    # Then it handled every one of them, from the group's unsharded destination
    assert sorted(r["id"] for r in read_records(record_file)) == sorted(ids)


PROBE_PLUGIN = '''
"""Records what a handler sees of an item; fails the items that ask to, on their first tries."""
import json, os
from statusq import QueueHandler

class Probe(QueueHandler):
    def handle(self, item):
        line = json.dumps({"n": item.payload["n"], "attempt": item.attempt, "priority": item.priority,
                           "headers": item.headers}) + "\\n"
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        if item.payload["fail"]:
            raise ValueError("fails on every try")
        return True

def register(api):
    api.register_handler("probe", Probe)
'''


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_a_moved_item_keeps_its_headers_priority_and_attempts(
    backend: str, write_config: Callable[..., Path], plugin_dir: Path, record_file: Path
) -> None:
    # Given a site that turns hot at its second item (hot_after = 2), and items of it with a
    # user header and a priority; the last one fails on every try (max_retries = 2)
    (plugin_dir / "probe.py").write_text(PROBE_PLUGIN)
    broker = make_broker(backend)
    config = write_config("sqlite:///unused.sqlite", stomp_toml(broker, hot_after=2), queue={"subsystem": "stomp"})
    site = f"hot-{broker.basename.strip('/').split('/')[-1]}.example"
    with statusq.connect(config) as qm:
        qm.enqueue_many(
            [
                Item({"n": n, "fail": n == 5}, "probe", site=site, headers={"x-trace": f"t-{n}"}, priority=6)
                for n in range(6)
            ]
        )

    # When one worker runs them
    result = run_cli("daemon", "--workers", "1", "--idle-exit", "3", config=config, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    # Then the site was hot (its later items were moved), and each item ran with its header and
    # priority; the failing one ran exactly three times, attempts 1, 2, 3: a move charges none,
    # and its retries (sent back to the shard, from the site's destination) kept counting
    assert f"site {site} is hot" in result.stderr
    records = read_records(record_file)
    assert sorted((r["n"], r["attempt"]) for r in records) == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (5, 2),
        (5, 3),
    ]
    assert all(r["headers"].get("x-trace") == f"t-{r['n']}" and r["priority"] == 6 for r in records)


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_a_worker_killed_while_moving_a_hot_sites_items_loses_none(
    backend: str, write_config: Callable[..., Path], tmp_path: Path, record_file: Path
) -> None:
    # Given a backlog of one site that turns hot at its fifth item (one worker)
    broker = make_broker(backend)
    toml = stomp_toml(broker, hot_after=5)
    config = write_config("sqlite:///unused.sqlite", toml, queue={"subsystem": "stomp", "max_retries": 5})
    with statusq.connect(config) as qm:
        ids = qm.enqueue_many([Item({"n": n}, "count", site=FLOODER) for n in range(3000)])

    # When the worker is SIGKILLed as soon as it starts moving (its moves' transactions cut off
    # wherever they were), and the daemon replaces it
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "3", log=log)
    wait_for(lambda: log.exists() and f"site {FLOODER} is hot" in log.read_text(), timeout=60, what="the site hot")
    os.kill(read_records(record_file)[-1]["pid"], signal.SIGKILL)
    assert daemon.wait(timeout=300) == 0, log.read_text()[-3000:]

    # Then every item ran (a move cut off leaves the original to be redelivered)
    handled = {r["id"] for r in read_records(record_file)}
    assert handled >= set(ids), f"{len(set(ids) - handled)} items lost"


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_a_hot_site_cools_and_turns_hot_again(
    backend: str, write_config: Callable[..., Path], tmp_path: Path, record_file: Path
) -> None:
    # Given a site that turns hot at its second item and cools after a second idle
    broker = make_broker(backend)
    config = write_config(
        "sqlite:///unused.sqlite", stomp_toml(broker, hot_after=2, hot_cool="1s"), queue={"subsystem": "stomp"}
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", "--idle-exit", "30", log=log)
    wait_for(lambda: log.exists() and "worker ready" in log.read_text(), timeout=60, what="the worker")

    def burst(n: int) -> list[str]:
        with statusq.connect(config) as qm:
            return qm.enqueue_many([Item({"n": k}, "count", site=FLOODER) for k in range(n)])

    def handled() -> set[str]:
        return {r["id"] for r in read_records(record_file)}

    # When a burst makes it hot, and the worker unsubscribes once its destination is idle
    first = burst(20)
    wait_for(lambda: handled() >= set(first), timeout=60, what="the first burst")
    wait_for(lambda: "unsubscribed" in log.read_text(), timeout=60, what="the site to cool")

    # Then a second burst makes it hot again (a new subscription), and every item runs once
    second = burst(20)
    wait_for(lambda: handled() >= set(second), timeout=60, what="the second burst")
    daemon.terminate()
    daemon.wait(timeout=60)
    text = log.read_text()
    assert text.count(f"site {FLOODER} is hot") == 2, text[-3000:]
    ids = [r["id"] for r in read_records(record_file)]
    assert sorted(ids) == sorted(first + second)


def test_on_rabbitmq_an_item_left_in_a_site_queue_goes_back_to_its_group(
    write_config: Callable[..., Path], tmp_path: Path, record_file: Path
) -> None:
    # Given a worker running (its group's queues declared), not subscribed to a site's queue
    broker = make_broker("rabbitmq")
    config = write_config(
        "sqlite:///unused.sqlite", stomp_toml(broker, hot_hold="1s", flavor="rabbitmq"), queue={"subsystem": "stomp"}
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", log=log)
    wait_for(lambda: log.exists() and "worker ready" in log.read_text(), timeout=60, what="the worker")

    # When an item is left in that site's queue (every worker cooled the site, or the one
    # holding it died), the queue declared as statusq declares it (hot_hold = 1 s)
    stomp = Config.model_validate(tomllib.loads(config.read_text())).queue.stomp
    link = StompLink(stomp, "test")
    link.connect()
    try:
        headers = wire.new_headers(FLOODER, "count", "application/json")
        own = Destinations(stomp.basename, [], shards=stomp.shards).for_site("main", FLOODER)
        link.send(own, b'{"n": "left"}', headers, confirm=True)
    finally:
        link.close()

    # Then after hot_hold it went back to the group's queue, and ran
    wait_for(lambda: read_records(record_file), timeout=60, what="the item back from the site's queue")
    daemon.terminate()
    daemon.wait(timeout=60)
    assert [r["id"] for r in read_records(record_file)] == [headers[wire.ID]]
