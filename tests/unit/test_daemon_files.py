"""statusq.daemon: state files, the pid file, process titles and the supervisor's lifeline."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.daemon.lifeline import Lifeline
from statusq.daemon.pidfile import PidFile, PidFileError
from statusq.daemon.processes import descendants
from statusq.daemon.proctitle import ProcTitle, groups_label, supervisor_title
from statusq.daemon.reporter import StateReporter
from statusq.limits import MemoryProbe
from statusq.outcome import Outcome, Result
from statusq.state import (
    RunDir,
    SupervisorState,
    WorkerState,
    daemon_summary,
    describe_worker,
    read_worker,
    remove_stale,
    running_daemons,
    worker_row,
)
from tests.unit.fakes import make_delivery


class FixedProbe(MemoryProbe):
    def rss(self, pid: int | str = "self") -> int:
        return 42 << 20


@pytest.fixture
def reporter(tmp_path: Path) -> StateReporter:
    return StateReporter(tmp_path / "worker-1.json", WorkerState(slot=2, pid=1234, generation=0), FixedProbe())


# -- state files --------------------------------------------------------------------------------


def test_a_worker_reports_busy_before_its_handler_runs_and_idle_after(reporter: StateReporter) -> None:
    # Given a worker that became ready with its consumer id
    reporter.ready("host:1234:abcd")
    delivery = make_delivery({"n": 1}, id="7", site="example.org", transport="distrib", attempt=2)

    # When an item starts
    reporter.before_item(delivery)

    # Then its file names the item and when it started (on the clock the supervisor compares with)
    busy = read_worker(reporter.path)
    assert busy is not None and busy.state == "busy" and busy.consumer == "host:1234:abcd"
    assert busy.item is not None and (busy.item.id, busy.item.attempt) == ("7", 2)
    assert busy.item.since_monotonic <= time.monotonic()
    assert "busy" in describe_worker(busy) and "item id=7 site=example.org transport=distrib" in describe_worker(busy)

    # And after the outcome it is idle again, with the outcome counted: for a short item, once
    # the loop found no next item to say so instead (the "idle" write is deferred)
    reporter.after_item(delivery, Result(Outcome.RETRY, "boom"))
    deferred = read_worker(reporter.path)
    assert reporter.dirty and deferred is not None and deferred.state == "busy"
    reporter.flush()
    idle = read_worker(reporter.path)
    assert idle is not None and idle.state == "idle" and idle.item is None
    assert idle.handled == {"done": 0, "retry": 1, "dead": 0} and idle.rss == 42 << 20


def test_a_long_item_is_reported_idle_at_once(reporter: StateReporter, monkeypatch: pytest.MonkeyPatch) -> None:
    # An item that ran a while may have been near its time limit: no moment of a stale "busy"
    monkeypatch.setattr(StateReporter, "DEFER_UNDER", 0.0)
    reporter.ready("c")
    delivery = make_delivery()
    reporter.before_item(delivery)

    reporter.after_item(delivery, Result(Outcome.DONE))

    idle = read_worker(reporter.path)
    assert not reporter.dirty and idle is not None and idle.state == "idle" and idle.handled["done"] == 1


def test_the_next_items_busy_write_carries_the_deferred_idle(reporter: StateReporter) -> None:
    reporter.ready("c")
    first, second = make_delivery(id="1"), make_delivery(id="2")
    reporter.before_item(first)
    reporter.after_item(first, Result(Outcome.DONE))

    reporter.before_item(second)

    state = read_worker(reporter.path)
    assert not reporter.dirty and state is not None and state.item is not None and state.item.id == "2"
    assert state.handled["done"] == 1


def test_the_state_file_holds_what_json_dumps_of_the_state_would(reporter: StateReporter) -> None:
    # The reporter writes its JSON from a cached text of the rarely changing fields: every
    # change of those, and text that needs escaping, must still come out exact
    def file_matches_state() -> bool:
        written = json.loads(reporter.path.read_bytes())
        return bool(written == json.loads(json.dumps(reporter.state.to_dict())))

    reporter.ready('host:1:\u00e9"quoted"')
    assert file_matches_state()
    odd = make_delivery(id='7"\\n\u2603', site="ex\u00e4mple.org", transport="distrib", attempt=3)
    reporter.before_item(odd)
    assert file_matches_state()
    reporter.after_item(odd, Result(Outcome.DEAD, "boom"))
    reporter.flush()
    assert file_matches_state()
    reporter.request("restart")  # a cached field changes
    assert file_matches_state() and json.loads(reporter.path.read_bytes())["requests"] == 1
    reporter.failed("a long error " * 500)  # outgrows the map
    assert file_matches_state()
    reporter.exiting()
    assert file_matches_state()


def test_a_start_failure_and_a_request_are_last_words_the_supervisor_reads(reporter: StateReporter) -> None:
    reporter.request("shutdown")
    reporter.failed("plugin 'x' failed to import")

    state = read_worker(reporter.path)
    assert state is not None and state.error == "plugin 'x' failed to import" and state.request == "shutdown"
    assert state.requests == 1
    assert not state.ready


def test_an_unwritable_state_file_never_fails_the_item(tmp_path: Path) -> None:
    reporter = StateReporter(tmp_path / "missing" / "worker-1.json", WorkerState(1, 1, 0), FixedProbe())

    reporter.before_item(make_delivery())  # no exception

    assert not reporter.path.exists()


def test_garbage_in_a_state_file_reads_as_no_state(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text('{"unexpected": 1}')

    assert read_worker(tmp_path / "a.json") is None
    assert read_worker(tmp_path / "b.json") is None
    assert read_worker(tmp_path / "absent.json") is None


def test_status_sees_live_daemons_only_and_stale_folders_are_removed(tmp_path: Path) -> None:
    # Given the folder of this (live) process, and one of a supervisor that died long ago
    live = RunDir(tmp_path)
    live.create()
    live.write_supervisor(SupervisorState(os.getpid(), ["main"], 2, "x.toml", restarts={"crash": 1, "memory": 3}))
    StateReporter(live.worker_path(os.getpid()), WorkerState(1, os.getpid(), 0), FixedProbe()).ready("c")
    dead_pid = _a_dead_pid()
    stale = RunDir(tmp_path, dead_pid)
    stale.create()
    stale.write_supervisor(SupervisorState(dead_pid, None, 1, None))

    # When status looks, and a new supervisor cleans up
    [(supervisor, workers)] = running_daemons(tmp_path)
    remove_stale(tmp_path)

    # Then only the live daemon is shown, with its workers and restarts, and the stale folder went
    assert supervisor.pid == os.getpid() and [w.slot for w in workers] == [1]
    summary = daemon_summary(supervisor)
    assert "2 worker(s) [main]" in summary and "restarts: crash 1, memory 3" in summary
    assert worker_row(workers[0])[:3] == ["1", str(os.getpid()), "idle"]
    assert live.path.exists() and not stale.path.exists()


def _a_dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# -- pid file -----------------------------------------------------------------------------------


def test_a_pid_file_held_by_a_running_daemon_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run" / "statusq.pid"
    with PidFile(path):
        assert path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(PidFileError, match=rf"held by a running daemon \(pid {os.getpid()}\)") as err:
            PidFile(path).acquire()
        assert err.value.exit_code == os.EX_CANTCREAT
    assert not path.exists()


def test_a_stale_pid_file_is_taken_over(tmp_path: Path) -> None:
    # Given a file left by a daemon that crashed: its lock died with it
    path = tmp_path / "statusq.pid"
    path.write_text("99999999\n")

    with PidFile(path) as pidfile:
        assert path.read_text() == f"{os.getpid()}\n" and pidfile.fd is not None


def test_a_pid_file_in_an_unwritable_place_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(PidFileError, match="cannot open"):
        PidFile(tmp_path / "file" / "statusq.pid").acquire()


# -- process titles -----------------------------------------------------------------------------


def test_a_worker_title_shows_what_it_handles() -> None:
    titles: list[str] = []
    title = ProcTitle(2, {"main"}, setter=titles.append)
    delivery = make_delivery(transport="distrib", site="example.org")

    title.show("idle")
    title.before_item(delivery)
    title.after_item(delivery, Result(Outcome.DONE))
    assert title.dirty_since is not None  # "idle" waits for the loop's flush...
    title.flush()

    assert titles == [
        "statusq worker 2 [main]: idle",
        "statusq worker 2 [main]: handling distrib site=example.org",
        "statusq worker 2 [main]: idle",
    ]
    assert title.dirty_since is None


def test_a_title_counts_the_items_in_hand_when_there_are_several() -> None:
    titles: list[str] = []
    title = ProcTitle(1, None, setter=titles.append)
    a, b = make_delivery(site="a.example"), make_delivery(site="b.example")

    title.before_item(a)
    title.before_item(b)
    title.flush()  # the count is shown at the loop's next flush, not at every item
    title.after_item(a, Result(Outcome.DONE))
    title.flush()
    title.after_item(b, Result(Outcome.DONE))
    title.flush()

    assert titles == [
        "statusq worker 1 [all]: handling echo site=a.example",
        "statusq worker 1 [all]: handling 2 items",
        "statusq worker 1 [all]: handling 1 item",
        "statusq worker 1 [all]: idle",
    ]


def test_a_title_is_set_once_while_one_sites_items_flow() -> None:
    titles: list[str] = []
    title = ProcTitle(1, None, setter=titles.append)
    a, b = make_delivery(site="a.example"), make_delivery(site="b.example")

    for delivery in (a, a, a, b):
        title.before_item(delivery)
        title.after_item(delivery, Result(Outcome.DONE))  # ...so the next item comes first
    title.flush()
    title.before_item(b)  # after "idle", the same site is news again

    assert titles == [
        "statusq worker 1 [all]: handling echo site=a.example",
        "statusq worker 1 [all]: handling echo site=b.example",
        "statusq worker 1 [all]: idle",
        "statusq worker 1 [all]: handling echo site=b.example",
    ]


def test_group_labels() -> None:
    assert groups_label(None) == "all"
    assert groups_label({"xmpp", "main"}) == "main,xmpp"
    assert supervisor_title(None, "2/2 workers, running") == "statusq supervisor [all]: 2/2 workers, running"


# -- lifeline ------------------------------------------------------------------------------------


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_the_lifeline_reports_the_supervisors_death_once(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    lost: list[bool] = []
    lifeline = Lifeline(read_fd, lambda: lost.append(True))

    # While the supervisor lives, nothing to read: no news
    assert lifeline.poll() is False and lost == [] and lifeline.filenos() == [read_fd]

    # When its end closes (the kernel does that when the supervisor dies)
    os.close(write_fd)
    lifeline.poll()

    # Then the worker is told once, and stops watching the descriptor
    assert lost == [True] and lifeline.filenos() == []


# -- the process tree a hard kill takes down ------------------------------------------------------


def test_descendants_are_read_from_proc_children_files(tmp_path: Path) -> None:
    # Given a worker 10 with a shell 11 (two threads) that started 12, which started 13
    for pid, tid, kids in [(10, 10, "11"), (11, 11, "12 "), (11, 14, ""), (12, 12, "13"), (13, 13, "")]:
        task = tmp_path / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "children").write_text(kids)

    assert sorted(descendants(10, tmp_path)) == [11, 12, 13]
    assert descendants(99, tmp_path) == []


def test_a_state_outgrowing_the_map_is_still_read_whole(tmp_path: Path) -> None:
    # Given a reporter whose first state fits one page
    path = tmp_path / "worker-1.json"
    reporter = StateReporter(path, WorkerState(slot=1, pid=1, generation=0), FixedProbe())
    reporter.ready("c")

    # When a state needs more than a page (a long start-up error), then a short one again
    reporter.failed("x" * 10_000)
    long_state = read_worker(path)
    reporter.write(error=None, state="idle")

    # Then each read gives the state last written, whole
    assert long_state is not None and long_state.error == "x" * 10_000
    short_state = read_worker(path)
    assert short_state is not None and short_state.error is None and short_state.state == "idle"


def test_every_item_in_hand_is_in_the_state_file_the_oldest_as_item(reporter: StateReporter) -> None:
    # Given three items begun one after another ([daemon] concurrency > 1)
    reporter.ready("c")
    first, second, third = (make_delivery(id=str(n), site=f"s{n}.example") for n in (1, 2, 3))
    for delivery in (first, second, third):
        reporter.before_item(delivery)
    assert reporter.dirty  # the oldest is in the file at once, the others at the loop's next flush
    reporter.flush()
    state = read_worker(reporter.path)
    assert state is not None and state.in_hand == 3 and state.state == "busy"
    assert state.item is not None and state.item.id == "1" and [o.id for o in state.others] == ["2", "3"]
    assert "+2 more" in describe_worker(state) and "+2 more" in " ".join(worker_row(state))
    assert json.loads(reporter.path.read_bytes()) == json.loads(json.dumps(reporter.state.to_dict()))

    # When the middle one and then the oldest finish
    reporter.after_item(second, Result(Outcome.DONE))
    reporter.after_item(first, Result(Outcome.DONE))

    # Then the one left is the item (still busy), and the last one's end is idle
    reporter.flush()
    state = read_worker(reporter.path)
    assert state is not None and state.item is not None and state.item.id == "3" and state.others == []
    assert state.state == "busy" and state.handled["done"] == 2
    reporter.after_item(third, Result(Outcome.RETRY, "x"))
    reporter.flush()
    state = read_worker(reporter.path)
    assert state is not None and state.state == "idle" and state.in_hand == 0
