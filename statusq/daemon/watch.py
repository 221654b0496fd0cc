"""What the supervisor learns of its workers, and what it does about it: their state files while
they live (readiness, a time limit passed, a request only the supervisor can carry out) and their
exits (why each ended, the claims it held, when its slot is filled again).

Apart from :mod:`statusq.daemon.supervisor` (the loop, spawning, stopping, reloading, reporting)
because this is where each worker's end is judged: :func:`statusq.daemon.exits.classify` says why
it ended, the storm guard whether to respawn.  A mixin of :class:`QueueDaemon`, whose state it
reads and changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from statusq.daemon.exits import Cause, Exit, Respawn, classify
from statusq.daemon.processes import WorkerProcess, kill_tree, reap, release_claims
from statusq.daemon.rollout import Rollout
from statusq.daemon.storm import StormGuard, Verdict
from statusq.metrics.supervisor import SupervisorMetrics
from statusq.state import SupervisorState, read_worker, remove_file

if TYPE_CHECKING:
    from statusq.daemon.supervisor import DaemonOptions

log = logging.getLogger("statusq.daemon")


class WorkerWatch:
    """The watching half of :class:`~statusq.daemon.supervisor.QueueDaemon`."""

    # The supervisor's own, set in its __init__.
    procs: dict[int, WorkerProcess]
    due: dict[int, float]
    finished: set[int]
    empty: set[int]
    storm: StormGuard
    rollout: Rollout | None
    reload_pending: str | None
    exit_code: int | None
    metrics: SupervisorMetrics
    status: SupervisorState
    options: DaemonOptions
    _published: float
    # and its methods
    current: Callable[[int], WorkerProcess | None]
    _request_reload: Callable[[str], None]

    def _watch(self) -> None:
        now = time.monotonic()
        for proc in list(self.procs.values()):
            state = read_worker(proc.path)
            if state is not None:
                proc.state = state
            if not proc.ready and state is not None and state.ready:
                self._mark_ready(proc)
            self._kill_if_stuck(proc, now)
            self._check_requests(proc)

    def _mark_ready(self, proc: WorkerProcess) -> None:
        proc.ready = True
        self.storm.worker_ready()
        if self.status.state == "starting":
            self.status.state = "running"
        self._published = 0.0

    def _kill_if_stuck(self, proc: WorkerProcess, now: float) -> None:
        why = proc.stuck(now)
        if why is None:
            return
        if proc.ready:
            proc.killed_for = why  # a time-limit kill: planned, replaced at once, not a crash
        else:
            proc.note = why  # a failed start: a crash, for the storm guard
        log.error("%s %s: killing it", proc.name, why)
        kill_tree(proc.pid)

    def _check_requests(self, proc: WorkerProcess) -> None:
        """Control commands a worker received that only the supervisor can carry out."""
        state = proc.state
        if state is None or state.requests <= proc.requests_seen:
            return
        proc.requests_seen, what = state.requests, state.request
        if what == "shutdown":
            log.info("control command shutdown (via %s)", proc.name)
            self.exit_code = 0
        # Every worker gets the same broadcast: one reload serves them all.
        elif what == "restart" and (self.rollout is None or proc.generation >= self.rollout.generation):
            self._request_reload(f"control command restart (via {proc.name})")

    def _reap(self) -> None:
        for pid, code in reap():
            proc = self.procs.pop(pid, None)
            if proc is not None:
                self._published = 0.0
                self._on_exit(proc, code)

    def _on_exit(self, proc: WorkerProcess, code: int) -> None:
        state = read_worker(proc.path) or proc.state
        remove_file(proc.path)
        if not proc.ready and state is not None and state.ready:
            self._mark_ready(proc)  # it got ready, and died, between two looks
        end = classify(
            code,
            ready=proc.ready,
            retiring=proc.retiring,
            idle_exit=self.options.idle_exit is not None,
            killed_for=proc.killed_for,
            error=proc.note or (state.error if state else None),
            item=state.item.describe() if state is not None and state.item is not None else None,
        )
        log.log(end.level, "%s %s", proc.name, end.detail)
        self.metrics.worker_exited(proc.pid, end.cause.value, end.counter, len(self.procs))
        if end.may_hold_claims and state is not None and state.consumer:
            release_claims(proc, state.consumer, f"{proc.name} {end.detail}")
        if end.counter:
            self.status.restarts[end.counter] += 1
        if proc.candidate and self.rollout is not None:
            log.error("%s", self.rollout.failure(proc, end.detail))
            self.rollout, self.reload_pending, self.status.state = None, None, "running"
        elif end.respawn is Respawn.NEVER:
            if end.cause is Cause.IDLE:
                self.finished.add(proc.slot)
            elif end.cause is Cause.MEMORY_AT_START:
                self.empty.add(proc.slot)
                log.error("slot %d stays empty: a new worker would be over the memory limit too", proc.slot)
        elif self.current(proc.slot) is None:
            self._schedule(proc, end)

    def _schedule(self, proc: WorkerProcess, end: Exit) -> None:
        now = time.monotonic()
        delay = proc.config.daemon.spawn_delay
        if end.respawn is Respawn.NOW:
            self.due[proc.slot] = now
            return
        if end.cause is not Cause.CRASH:
            self.due[proc.slot] = now + delay
            return
        decision = self.storm.crash()
        self.due[proc.slot] = now + max(delay, decision.pause)
        if decision.verdict is not Verdict.RESPAWN:
            log.error("%s", decision.message(f"{proc.name} {end.detail}"))
        if decision.verdict is Verdict.GIVE_UP:
            self.exit_code = end.crash_code
