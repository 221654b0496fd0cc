"""Faults between hosts, with hosts as Linux network namespaces (issue 18): a host cut off the
network, the broker frozen, the broker's master killed, a whole host's daemon killed, each mid-run
while producers on the hosts keep enqueueing.

One topology for the module (tests/e2e/netns_topology.py): an ActiveMQ master/slave pair sharing a
store in a "brokers" namespace, the daemons' ``[queue.stomp] servers`` listing both; hosts h1..h3
each with a daemon of two workers and, during each test, a producer writing an item's id only after
``enqueue`` returned it.  After every fault: no returned id is lost, the duplicates are within the
bound each test states, and the faulted host (or every host, for a broker fault) works again by
itself.  The tests run in the order written; the master's kill is last (the slave then serves
alone).  Nothing here uses the shared servers.

Heart-beats are 2 s both ways.  Detection is asserted by order in the daemon's log only: the line
"heartbeat timeout on consumer" of each worker comes while the fault lasts (before a line the test
writes when every worker has logged it, or the fault is about to end), so the silence was found by
heart-beats, not by a connection error once it ended.  How soon (within two intervals, the issue
asks) is printed (``-s``) for the docs, never asserted: the machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.netns_topology import ACK_WINDOW, HEARTBEAT_MS, HOSTS, PREFETCH, Producers, Topology, tail, topology
from tests.history import History
from tests.servers import reachable

pytestmark = pytest.mark.e2e

WORKERS = 2  # a host's daemon's (--workers 2)
#: What one worker can run twice after a fault: its prefetched items handled but not acked
#: (prefetch) and the acks batched but not yet written (the ACK window).
PER_WORKER = PREFETCH + ACK_WINDOW
HEARTBEAT = HEARTBEAT_MS / 1000
TIMEOUT_LINE = "heartbeat timeout on consumer: "


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    yield from topology(tmp_path_factory.mktemp("netns"))


def flowing(topo: Topology, prefix: str) -> Producers:
    """Producers started on every host, once each has 20 ids returned and some are handled, and
    no link connected within the last two heart-beats: stomp.py ignores what it receives for
    1.5 intervals after CONNECTED (a grace for the first heart-beat), so a fault sooner than
    that after a (re)connection is found up to 1.5 intervals later than in a steady run."""
    for host in HOSTS:
        quiet = lambda h=host: time.time() - topo.last_connect(h) > 2 * HEARTBEAT  # noqa: E731
        wait_for(quiet, timeout=120, what=f"{host}'s links connected for two heart-beats")
    producers = topo.start_producers(prefix)
    for host in HOSTS:
        wait_for(lambda h=host: producers.count(h) >= 20, timeout=60, what=f"{host}'s producer under way")
    wait_for(lambda: len(topo.handled(prefix)) >= 30, timeout=60, what="items handled")
    return producers


def rejoined(topo: Topology, producers: Producers, hosts: list[str], since: float) -> float:
    """Wait until every one of ``hosts`` has had an enqueue return and handled an item returned
    from now on; the seconds that took from ``since``.  The producers then go on 5 s more, so
    items flow through the recovered topology too."""
    counts = {host: producers.count(host) for host in HOSTS}
    offsets = {host: size(topo.records(host)) for host in HOSTS}
    for host in hosts:
        wait_for(lambda h=host: producers.count(h) > counts[h], timeout=120, what=f"{host} enqueues")
        works = lambda h=host: topo.handles_new_items(h, producers, counts, offsets[h])  # noqa: E731
        wait_for(works, timeout=120, what=f"{host} handles again")
    took = time.monotonic() - since
    time.sleep(5)
    return took


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def finish(topo: Topology, producers: Producers) -> History:
    """Stop the producers and wait until every id they were returned is handled."""
    producers.stop()

    def done() -> bool:
        return not topo.history(producers).lost

    with contextlib.suppress(AssertionError):  # the assertion on the history names what is missing
        wait_for(done, timeout=120, what="every returned id handled")
    history = topo.history(producers)
    print(f"\n{producers.prefix}: {history.summary()}")
    return history


def detection(topo: Topology, hosts: list[str], fault: str, within: float) -> dict[str, float]:
    """Watch ``hosts``' logs from now (the fault just happened) until each has a heart-beat
    timeout line of every worker, or ``within`` seconds (the fault's end is near): when each first
    logged one; then mark the logs there."""
    start = time.monotonic()
    offsets = {host: topo.log(host).stat().st_size for host in hosts}
    seen: dict[str, float] = {}
    done: set[str] = set()
    while len(done) < len(hosts) and time.monotonic() - start < within:
        for host in set(hosts) - done:
            lines = tail(topo.log(host), offsets[host]).count(TIMEOUT_LINE)
            if lines and host not in seen:
                seen[host] = time.monotonic() - start
            if lines >= WORKERS:
                done.add(host)
        time.sleep(0.02)
    for host in hosts:
        topo.mark(host, f"watched after {fault}")
    return seen


def between(topo: Topology, host: str, first: str, second: str) -> str:
    """``host``'s log from the test's line ``first`` to its line ``second`` (the last of each)."""
    text = topo.log(host).read_text()
    start = text.rindex(f"==== test: {first} ====")
    return text[start : text.index(f"==== test: {second} ====", start)]


def assert_detected(topo: Topology, hosts: list[str], fault: str, seen: dict[str, float]) -> None:
    silences = []
    for host in hosts:
        window = between(topo, host, fault, f"watched after {fault}")
        assert window.count(TIMEOUT_LINE) >= WORKERS, f"{host}: each worker saw the silence while it lasted"
        silences += [float(s) for s in re.findall(r"heartbeat timeout: diff_receive=([0-9.]+)", window)]
    print(
        f"\n{fault}: heart-beat timeout logged {', '.join(f'{h} {s:.2f}s' for h, s in sorted(seen.items()))} "
        f"after it; stomp.py's silence at detection {', '.join(f'{s:.2f}' for s in silences)}s "
        f"(heart-beat {HEARTBEAT:.0f} s)"
    )


def handed_over(topo: Topology, producers: Producers, ids: set[str], since: float, until: float) -> str:
    """When every one of ``ids`` had been handled, polled from now to ``until`` at most: how long
    items the cut host held waited for the broker to give them to the others (for the print)."""
    first = time.monotonic() - since
    while ids - set(topo.history(producers).handled) and time.monotonic() < until:
        time.sleep(0.2)
    took = time.monotonic() - since
    return f"by the first check, {first:.1f}s after it" if took - first < 0.2 else f"{took:.1f}s after it"


def test_a_host_cut_off_for_30s_rejoins_and_nothing_returned_is_lost(topo: Topology) -> None:
    """Bound: the cut host's two workers each run at most prefetch + ACK window items twice
    (handled while cut, their acks never reaching the broker, which redelivers them to the other
    hosts), plus one a producer (a SEND resent when its receipt did not come)."""
    # Given items flowing from producers on all three hosts
    producers = flowing(topo, "cut")
    host = "h1"

    # When h1's link is cut for 30 s, then restored
    topo.mark(host, "the cut")
    before = set(topo.history(producers).returned)
    cut = time.monotonic()
    topo.net.cut(host)
    try:
        seen = detection(topo, [host], "the cut", within=25)
        counts = {h: producers.count(h) for h in HOSTS}
        offsets = {h: size(topo.records(h)) for h in HOSTS}
        freed = handed_over(topo, producers, before, cut, until=cut + 30)
        time.sleep(max(0.0, 30 - (time.monotonic() - cut)))
        # (while h1 is away: what the other hosts did, and what still waits)
        others = [h for h in HOSTS if h != host and topo.handles_new_items(h, producers, counts, offsets[h])]
        waiting = before - set(topo.history(producers).handled)
    finally:
        topo.net.restore(host)
    restored = time.monotonic()

    # Then h1's workers noticed the silence by heart-beats, h1 handles and enqueues again
    assert_detected(topo, [host], "the cut", seen)
    # and meanwhile the other hosts went on, and had every item returned before the cut handled
    # (those h1 had prefetched included: the broker gave them to the others when it dropped h1)
    assert others == ["h2", "h3"]
    assert not waiting, f"{len(waiting)} items returned before the cut waited for h1 to come back"
    again = [r for r in topo.handled(producers.prefix, ["h2", "h3"]) if int(str(r["attempt"])) > 1]
    print(f"every item returned before the cut handled {freed}; {len(again)} redelivered to h2, h3 meanwhile")
    print(f"h1 back {rejoined(topo, producers, [host], restored):.1f}s after its link was restored")
    # and nothing whose enqueue returned is lost, duplicates within the bound
    history = finish(topo, producers)
    assert history.lost == [], history.summary()
    assert history.extra_runs <= WORKERS * PER_WORKER + len(HOSTS), history.summary()


def test_a_frozen_broker_is_detected_and_every_host_goes_on_after_it_thaws(topo: Topology) -> None:
    """The master frozen (SIGSTOP) for 10 s with the slave listed as a failover server (a standby
    while the frozen master holds the store's lock, so nothing serves meanwhile).  Bound: each of
    the six workers runs at most prefetch + ACK window items twice, plus one a producer."""
    # Given items flowing from producers on all three hosts
    producers = flowing(topo, "freeze")
    pid = topo.master.pid

    # When the broker freezes for 10 s, then thaws
    for host in HOSTS:
        topo.mark(host, "the freeze")
    frozen = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        seen = detection(topo, HOSTS, "the freeze", within=8)
        time.sleep(max(0.0, 10 - (time.monotonic() - frozen)))
    finally:
        os.kill(pid, signal.SIGCONT)
    thawed = time.monotonic()

    # Then every host's workers noticed it by heart-beats, and all work again
    assert_detected(topo, HOSTS, "the freeze", seen)
    print(f"all hosts back {rejoined(topo, producers, HOSTS, thawed):.1f}s after the thaw")
    history = finish(topo, producers)
    assert history.lost == [], history.summary()
    assert history.extra_runs <= len(HOSTS) * WORKERS * PER_WORKER + len(HOSTS), history.summary()


def test_a_host_whose_daemon_is_sigkilled_rejoins_once_started_again(topo: Topology) -> None:
    """h2's supervisor and both workers SIGKILLed at once: the broker redelivers what they held
    unacked to the other hosts.  Bound: h2's two workers' prefetch + ACK window each, plus one a
    producer."""
    # Given items flowing from producers on all three hosts
    producers = flowing(topo, "kill")
    host = "h2"
    before = topo.connected(host)

    # When h2's whole daemon is SIGKILLed, then started again
    killed = topo.kill_daemon(host)
    topo.start_daemon(host)
    started = time.monotonic()

    # Then it connects again and handles new items
    wait_for(lambda: topo.connected(host) >= before + WORKERS, timeout=90, what="h2's new workers")
    print(
        f"\nkilled {len(killed)} processes; h2 back {rejoined(topo, producers, [host], started):.1f}s after its start"
    )
    history = finish(topo, producers)
    assert history.lost == [], history.summary()
    assert history.extra_runs <= WORKERS * PER_WORKER + len(HOSTS), history.summary()


def test_the_master_sigkilled_the_slave_takes_over_and_every_host_goes_on(topo: Topology) -> None:
    """The master SIGKILLed: its connections reset at once, the slave takes the store's lock and
    opens its ports (the second server listed).  Bound: each of the six workers runs at most
    prefetch + ACK window items twice, plus one a producer."""
    # Given items flowing from producers on all three hosts
    producers = flowing(topo, "failover")

    # When the master is SIGKILLed
    killed = time.monotonic()
    topo.master.kill()
    wait_for(lambda: reachable(topo.broker_host, 61702), timeout=120, what="the slave to take over")
    serving = time.monotonic() - killed

    # Then every host works on through the slave
    back = rejoined(topo, producers, HOSTS, killed)
    print(f"\nslave serving {serving:.1f}s after the kill; all hosts back {back:.1f}s after it")
    for host in HOSTS:
        assert topo.servers[1] in topo.log(host).read_text(), f"{host} connected to the slave"
    history = finish(topo, producers)
    assert history.lost == [], history.summary()
    assert history.extra_runs <= len(HOSTS) * WORKERS * PER_WORKER + len(HOSTS), history.summary()
