"""The supervisor's OS plumbing: signal flags, forking, signalling and reaping workers.

Kept apart from :mod:`statusq.daemon.supervisor` so that the policy there reads as policy.
Signal handlers only count signals and wake the loop through ``signal.set_wakeup_fd``; the loop
looks at the counts when it wakes up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from statusq.config import Config
from statusq.daemon.child import SUPERVISOR_SIGNALS, WorkerSpec, run_worker
from statusq.errors import StatusqError
from statusq.forklock import FORK_LOCK, FORK_WAIT
from statusq.limits import MemoryProbe
from statusq.runtime import Runtime
from statusq.state import SupervisorState, WorkerState, describe_worker, read_worker

log = logging.getLogger("statusq.daemon")


def cpu_count() -> int:
    """CPUs this process may run on (a taskset or cpuset counts, unlike os.cpu_count())."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(slots=True)
class WorkerProcess:
    """The supervisor's record of one worker it forked."""

    slot: int
    pid: int
    generation: int
    config: Config
    started: float  # time.monotonic()
    path: Path  # its state file
    ready: bool = False
    #: Started by a reload to replace the slot's current worker, and not ready yet.
    candidate: bool = False
    #: Asked to stop (shutdown, reload, retired slot): its exit is planned.
    retiring: bool = False
    #: Why the supervisor SIGKILLed it past its hard time limit.
    killed_for: str | None = None
    #: A problem the supervisor saw itself (it never became ready in time).
    note: str | None = None
    #: The last state read from its file.
    state: WorkerState | None = None
    #: How many of its requests (state file ``requests``) the supervisor has acted on.
    requests_seen: int = 0

    @property
    def name(self) -> str:
        return f"worker {self.slot} (pid {self.pid})"

    def stuck(self, now: float) -> str | None:
        """Why it must be killed now, if it must: busy on one item past time_limit + grace (where
        SIGALRM could not reach: C code, blocked signals), or not ready within start_timeout.
        ``now`` is time.monotonic(), the clock the worker stamps its item with."""
        daemon = self.config.daemon
        if self.killed_for is not None or self.note is not None:
            return None  # already being killed
        if not self.ready:
            if now - self.started > daemon.start_timeout:
                return f"not ready within start_timeout ({daemon.start_timeout:g}s)"
            return None
        state = self.state
        if state is None or state.state != "busy" or state.item is None:
            return None
        # Every item in hand ([daemon] concurrency): each has its own transport's limit.
        for item in (state.item, *state.others):
            limit = daemon.time_limit if item.time_limit is None else item.time_limit  # its transport's
            busy = now - item.since_monotonic
            if limit and busy > limit + daemon.time_limit_grace:
                return (
                    f"busy {busy:.1f}s on {item.describe()}, past time_limit {limit:g}s "
                    f"+ time_limit_grace {daemon.time_limit_grace:g}s"
                )
        return None


class SignalFlags:
    """Counts the signals the supervisor handles and wakes its loop; nothing else."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = dict.fromkeys(SUPERVISOR_SIGNALS, 0)
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)

    @property
    def fds(self) -> tuple[int, int]:
        return self._wake_r, self._wake_w

    def install(self) -> None:
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w)
        for signum in SUPERVISOR_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.counts[signum] += 1

    def take(self, signum: int) -> int:
        """How many of ``signum`` arrived since the last take."""
        count, self.counts[signum] = self.counts[signum], 0
        return count

    def sleep(self, timeout: float) -> None:
        """Wait until a signal arrives or ``timeout`` passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], max(0.0, timeout))
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        os.close(self._wake_r)
        os.close(self._wake_w)


def fork_worker(spec: WorkerSpec) -> int:
    """Fork a worker running ``spec``; the child never comes back from here."""
    sys.stdout.flush()
    sys.stderr.flush()
    locked = FORK_LOCK.acquire(timeout=FORK_WAIT)
    if not locked:
        log.warning("a thread has held a database for %gs: forking a worker anyway", FORK_WAIT)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            run_worker(spec)  # unblocks the signals once its own handlers are in place
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        if locked:
            FORK_LOCK.release()
    return pid


def send(pid: int, signum: int) -> None:
    """Signal a worker that may have exited already (ESRCH is not an error here)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def descendants(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Every process below ``pid`` (Linux; empty where /proc cannot say)."""
    found: list[int] = []
    for children in proc.glob(f"{pid}/task/*/children"):
        try:
            kids = [int(word) for word in children.read_text().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            found += [kid, *descendants(kid, proc)]
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a worker and whatever it started: a handler stuck in ``os.system("convert ...")``
    leaves no orphan behind.  The tree is read before anything dies, while it is still a tree."""
    for target in [pid, *descendants(pid)]:
        send(target, signal.SIGKILL)


def release_claims(proc: WorkerProcess, owner: str, reason: str) -> None:
    """Give back what a dead worker held, now rather than after claim_timeout.  On a short-lived
    connection: the supervisor forks, and a pooled connection would be shared with its workers."""
    try:
        with Runtime(proc.config).queue_manager() as qm:
            released = qm.release_claims(owner, reason)
    except StatusqError as exc:
        log.warning("%s: its items come back after claim_timeout, releasing failed: %s", proc.name, exc)
        return
    if released:
        log.warning("%s died holding %d item(s): released, the attempt counted", proc.name, released)


def release_owners(config: Config) -> Callable[[list[str], str], int]:
    """Releases a gone daemon's workers' claims (:mod:`statusq.daemon.heartbeat`), on one
    short-lived connection; on a backend without claims (STOMP) nothing is opened."""

    def release(owners: list[str], reason: str) -> int:
        if config.queue.subsystem != "db" or not owners:
            return 0
        with Runtime(config).queue_manager() as qm:
            return sum(qm.release_claims(owner, reason) for owner in owners)

    return release


def reap() -> Iterator[tuple[int, int]]:
    """(pid, exit code or minus the signal) of every child that ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


def dump_lines(status: SupervisorState, procs: list[WorkerProcess]) -> list[str]:
    """What SIGUSR1 logs: the supervisor, then each worker as its state file says (fresh RSS)."""
    restarts = ", ".join(f"{cause} {count}" for cause, count in status.restarts.items())
    lines = [
        f"supervisor pid {status.pid} {status.state}: {len(procs)} worker process(es) for {status.workers} "
        f"slot(s); restarts: {restarts}; reloads {status.reloads}"
    ]
    probe = MemoryProbe()
    for proc in sorted(procs, key=lambda p: (p.slot, p.generation)):
        state = read_worker(proc.path) or proc.state
        if state is None:
            lines.append(f"{proc.name} generation {proc.generation}: starting")
            continue
        state.rss = probe.rss(proc.pid) or state.rss
        lines.append(f"{proc.name} generation {proc.generation}: {describe_worker(state)}")
    return lines
