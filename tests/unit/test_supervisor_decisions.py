"""statusq.daemon.supervisor: what the supervisor decides when a worker ends or asks for something.

No process is forked: workers are records with made-up pids, their ends are exit codes handed to
the supervisor as its reaping would.  The end-to-end tests run the real thing.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.config import load_config
from statusq.daemon.processes import WorkerProcess
from statusq.daemon.supervisor import DaemonOptions, QueueDaemon
from statusq.defaults import EXIT_MEMORY_AT_START, EXIT_RESTART
from statusq.state import ItemInHand, WorkerState


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "statusq.toml"
    path.write_text('[daemon]\nspawn_delay = "2s"\nstorm_attempts = 2\ntime_limit = "10s"\ntime_limit_grace = "5s"\n')
    return path


@pytest.fixture
def daemon(config_file: Path) -> Iterator[QueueDaemon]:
    supervisor = QueueDaemon(load_config(config_file), DaemonOptions(workers=2))
    yield supervisor
    os.close(supervisor.flags.fds[0])
    os.close(supervisor.flags.fds[1])


def worker(daemon: QueueDaemon, slot: int, pid: int, *, ready: bool = True, **state: object) -> WorkerProcess:
    proc = WorkerProcess(slot, pid, daemon.generation, daemon.config, time.monotonic(), Path(f"/nonexistent/{pid}"))
    proc.ready = ready
    proc.state = WorkerState(slot, pid, daemon.generation, **state)  # type: ignore[arg-type]
    daemon.procs[pid] = proc
    return proc


def ends(daemon: QueueDaemon, proc: WorkerProcess, code: int) -> None:
    del daemon.procs[proc.pid]
    daemon._on_exit(proc, code)


def test_a_crash_is_replaced_after_spawn_delay_and_counted(daemon: QueueDaemon) -> None:
    proc = worker(daemon, 1, 101)

    ends(daemon, proc, -signal.SIGSEGV)

    assert daemon.due[1] - time.monotonic() == pytest.approx(2.0, abs=0.5)
    assert daemon.status.restarts == {"crash": 1, "memory": 0, "time_limit": 0}
    assert daemon.exit_code is None


def test_a_memory_restart_is_replaced_at_once(daemon: QueueDaemon) -> None:
    proc = worker(daemon, 2, 102)

    ends(daemon, proc, EXIT_RESTART)

    assert daemon.due[2] <= time.monotonic()
    assert daemon.status.restarts["memory"] == 1


def test_a_worker_over_the_limit_at_start_leaves_its_slot_empty(daemon: QueueDaemon) -> None:
    proc = worker(daemon, 1, 101)

    ends(daemon, proc, EXIT_MEMORY_AT_START)

    assert 1 not in daemon.due and daemon.empty == {1}
    assert daemon._nothing_left() == os.EX_CONFIG


def test_crashes_at_start_of_a_daemon_that_never_served_give_up_with_the_workers_code(daemon: QueueDaemon) -> None:
    # Given storm_attempts = 2: the third crash in the window is a storm
    for pid in (101, 102, 103):
        ends(daemon, worker(daemon, 1, pid, ready=False), os.EX_CONFIG)

    assert daemon.exit_code == os.EX_CONFIG


def test_a_worker_stuck_past_time_limit_and_grace_is_due_for_killing(daemon: QueueDaemon) -> None:
    now = time.monotonic()
    item = ItemInHand("7", "s.example", "count", 1, time.time(), now - 16.0)
    stuck = worker(daemon, 1, 101, state="busy", item=item)
    slow = worker(daemon, 2, 102, state="busy", item=ItemInHand("8", "s.example", "count", 1, time.time(), now - 14))

    assert stuck.stuck(now) == (
        "busy 16.0s on item id=7 site=s.example transport=count attempt=1, past time_limit 10s + time_limit_grace 5s"
    )
    assert slow.stuck(now) is None


def test_any_item_in_hand_past_its_limit_makes_a_worker_due_for_killing(daemon: QueueDaemon) -> None:
    # Several in hand ([daemon] concurrency): the oldest is fine under its own longer limit, a
    # younger one of a transport with the default limit is past it
    now = time.monotonic()
    oldest = ItemInHand("7", "s.example", "slow", 1, time.time(), now - 30.0, 60.0)
    proc = worker(daemon, 1, 101, state="busy", item=oldest)
    assert proc.state is not None and proc.stuck(now) is None
    proc.state.others = [ItemInHand("9", "s.example", "count", 1, time.time(), now - 16.0)]

    assert proc.stuck(now) == (
        "busy 16.0s on item id=9 site=s.example transport=count attempt=1, past time_limit 10s + time_limit_grace 5s"
    )


def test_a_worker_never_ready_is_due_for_killing_after_start_timeout(daemon: QueueDaemon) -> None:
    proc = worker(daemon, 1, 101, ready=False)

    assert proc.stuck(proc.started + 59) is None
    assert proc.stuck(proc.started + 61) == "not ready within start_timeout (60s)"


def test_a_control_shutdown_from_any_worker_stops_the_daemon(daemon: QueueDaemon) -> None:
    proc = worker(daemon, 1, 101, request="shutdown", requests=1)

    daemon._check_requests(proc)

    assert daemon.exit_code == 0


def test_one_broadcast_restart_reaching_every_worker_makes_one_reload(daemon: QueueDaemon) -> None:
    # Given both workers received the same control "restart"
    first = worker(daemon, 1, 101, request="restart", requests=1)
    second = worker(daemon, 2, 102, request="restart", requests=1)

    daemon._check_requests(first)
    daemon._check_requests(second)

    # Then one reload replaces both, and nothing is queued after it
    assert daemon.rollout is not None and daemon.rollout.slots == [1, 2]
    assert daemon.reload_pending is None
    # And the same worker asking again later is heard again
    daemon.rollout = None
    second.state.requests = 2  # type: ignore[union-attr]
    daemon._check_requests(second)
    assert daemon.rollout is not None


def test_a_reload_with_a_broken_config_changes_nothing(
    daemon: QueueDaemon, config_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config_file.write_text("[daemon]\nworkers = -1\n")

    daemon._request_reload("SIGHUP")

    assert daemon.rollout is None
    assert "configuration not reloaded, the workers keep the old one" in caplog.text
    assert "daemon.workers" in caplog.text
