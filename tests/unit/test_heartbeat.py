"""The cluster view's alive/gone logic and what a beat does about a gone daemon, on a fake clock
and a real SQLite store (the same table PostgreSQL gets; the e2e tests run both)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.cluster import cluster_row, counts
from statusq.config import Config
from statusq.daemon.heartbeat import Heartbeat, Identity, Snapshot, backend_identity, snapshot
from statusq.daemon.processes import WorkerProcess
from statusq.forklock import FORK_LOCK
from statusq.queues.db.daemons import GONE_BEATS, DaemonRow, DaemonStore, read_cluster
from statusq.state import ItemInHand, WorkerState
from tests.unit.fakes import FakeClock

BEAT = 10.0


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def store(url: str) -> Iterator[DaemonStore]:
    opened = DaemonStore.open(url)
    yield opened
    opened.close()


def identity(name: str, backend: str = "db sqlite:///x") -> Identity:
    return Identity(f"host-{name}:1:abc", f"host-{name}", len(name), "1.0", 0.0, backend, "cfg")


def heartbeat(url: str, name: str, clock: FakeClock, released: list[tuple[list[str], str]], **kw: str) -> Heartbeat:
    def release(owners: list[str], reason: str) -> int:
        released.append((owners, reason))
        return len(owners)

    beat = Heartbeat(
        identity(name, **kw), beat=BEAT, forget=3600.0, open_store=lambda: DaemonStore.open(url),
        release=release, clock=clock,
    )  # fmt: skip
    beat.latest = Snapshot("running", 2, 2, 1, [f"{name}-w1", f"{name}-w2"])
    return beat


def row(beat_at: float, beat: float = BEAT) -> DaemonRow:
    return DaemonRow("h:1:x", "h", 1, "running", 1, 1, 0, "1.0", "db", "c", 0.0, beat_at, beat)


def test_a_daemon_is_gone_after_three_of_its_own_beats() -> None:
    assert GONE_BEATS == 3
    assert not row(100.0).gone(100.0 + 3 * BEAT)
    assert row(100.0).gone(100.0 + 3 * BEAT + 0.01)
    # Measured in the silent daemon's beat, not the reader's.
    assert not row(100.0, beat=60.0).gone(100.0 + 170.0)
    assert counts([row(100.0), row(125.0)], 100.0 + 3 * BEAT + 1) == {"alive": 1, "gone": 1}


def test_the_row_says_what_the_supervisor_saw(url: str, store: DaemonStore) -> None:
    clock, released = FakeClock(), []
    heartbeat(url, "a", clock, released).once()
    [mine] = store.list()
    assert (mine.host, mine.workers, mine.in_hand, mine.owners) == ("host-a", 2, 1, ["a-w1", "a-w2"])
    assert mine.beat_at == clock.now and mine.beat == BEAT
    cells = cluster_row(mine, clock.now + 1)
    assert cells[:3] == ["host-a", "1", "alive"] and cells[8] == "1s ago"


def test_a_gone_daemons_claims_are_released_once_by_a_live_one(url: str, store: DaemonStore) -> None:
    # Given two daemons beating on one store
    clock, released = FakeClock(), []
    a, b = heartbeat(url, "a", clock, released), heartbeat(url, "b", clock, released)
    a.once()
    b.once()
    # When b stops beating, a beats on: nothing happens within 3 of b's beats
    for _ in range(3):
        clock.now += BEAT
        a.once()
    assert released == []
    assert [r.status(clock.now) for r in store.list()] == ["alive", "alive"]
    # Then at a's next beat b is gone, and its workers' claims are released, once
    clock.now += BEAT
    seen = {r.host: r.status(clock.now) for r in a.once()}
    assert seen == {"host-a": "alive", "host-b": "gone"}
    assert len(released) == 1
    owners, reason = released[0]
    assert owners == ["b-w1", "b-w2"] and "host-b pid 1 gone" in reason
    clock.now += BEAT
    a.once()
    assert len(released) == 1
    # And a beat from b after all revives it (a hung store, not a dead host)
    b.once()
    assert {r.host: r.status(clock.now) for r in store.list()} == {"host-a": "alive", "host-b": "alive"}
    assert all(r.released_at is None for r in store.list())


def test_a_gone_daemon_on_another_queue_keeps_its_claims(url: str, store: DaemonStore) -> None:
    clock, released = FakeClock(), []
    a = heartbeat(url, "a", clock, released)
    heartbeat(url, "b", clock, released, backend="db postgresql://elsewhere/db").once()
    clock.now += 4 * BEAT
    a.once()
    assert released == []


def test_a_long_gone_daemon_is_forgotten_and_a_clean_stop_leaves_no_row(url: str, store: DaemonStore) -> None:
    clock, released = FakeClock(), []
    a, b = heartbeat(url, "a", clock, released), heartbeat(url, "b", clock, released)
    b.once()
    clock.now += 3599.0
    a.once()
    assert [r.host for r in store.list()] == ["host-a", "host-b"]
    clock.now += 2.0
    assert [r.host for r in a.once()] == ["host-a"]
    assert [r.host for r in store.list()] == ["host-a"]
    a.stop()  # never started: stop only removes the row
    assert store.list() == []


def test_snapshot_counts_ready_workers_items_in_hand_and_claim_owners(tmp_path: Path) -> None:
    item = ItemInHand("1", "s", "t", 1, 0.0, 0.0)
    procs = [
        WorkerProcess(
            1, 11, 0, Config(), 0.0, tmp_path, ready=True, state=WorkerState(1, 11, 0, consumer="o1", item=item)
        ),
        WorkerProcess(2, 12, 0, Config(), 0.0, tmp_path, ready=True, retiring=True, state=WorkerState(2, 12, 0)),
        WorkerProcess(3, 13, 0, Config(), 0.0, tmp_path),
    ]
    seen = snapshot("running", 3, procs)
    assert (seen.workers, seen.wanted, seen.in_hand, seen.owners) == (1, 3, 1, ["o1"])


def test_backend_identity_hides_the_password_and_digests_the_queue_section() -> None:
    db = Config.model_validate({"queue": {"db_url": "postgresql://u:secret@h/db"}})
    where, digest = backend_identity(db)
    assert where == "db postgresql://u:***@h/db" and len(digest) == 12
    stomp = Config.model_validate({"queue": {"subsystem": "stomp", "stomp": {"servers": ["b1:61613", "b2:61613"]}}})
    assert backend_identity(stomp)[0] == "stomp b1:61613,b2:61613 vhost /"
    assert backend_identity(stomp)[1] != digest


def test_the_web_overview_lists_every_hosts_daemons_and_marks_the_gone(tmp_path: Path) -> None:
    from tests.unit.test_web_app import HOST, TOKEN, make_app, make_config

    # Given a live daemon and one silent for 4 beats in the shared store
    config = make_config(tmp_path, token=TOKEN, anonymous_read=True)
    clock, released = FakeClock(time.time() - 4 * BEAT), []
    heartbeat(config.db_url, "gone", clock, released).once()
    clock.now += 4 * BEAT
    heartbeat(config.db_url, "live", clock, released).once()
    # Then the overview lists both, the silent one as gone
    page = make_app(config).handle("GET", "/", HOST).body.decode()
    assert "Cluster: every host" in page and "1 daemon(s) gone" in page
    assert re.search(r"<td>host-gone</td><td>4</td><td>gone</td>", page)
    assert re.search(r"<td>host-live</td><td>4</td><td>alive</td>", page)


def test_no_worker_is_forked_while_a_beat_is_in_the_store(url: str) -> None:
    # A child forked while this thread held a lock of SQLite's, the driver's or the pool's would
    # inherit it held and hang at its first use of the database: the beat holds FORK_LOCK.
    seen: list[bool] = []

    class Watched(DaemonStore):
        def beat(self, row: DaemonRow) -> None:
            seen.append(FORK_LOCK.locked())
            super().beat(row)

    clock, released = FakeClock(), []
    beat = heartbeat(url, "a", clock, released)
    beat.open_store = lambda: Watched.open(url)
    beat.once()
    assert seen == [True]
    assert not FORK_LOCK.locked()  # and given back after the beat


def test_reading_the_cluster_of_a_new_store_makes_no_table(url: str) -> None:
    # Given a store no daemon has beaten in: the cluster is empty, and asking made no table
    assert read_cluster(url) == []
    assert DaemonStore.for_reading(url) is None
