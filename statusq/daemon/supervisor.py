"""QueueDaemon: the supervisor process of ``statusq daemon``.

It imports no plugin and handles no item.  It forks N workers and keeps N running: a worker over
its memory limit or killed past its hard time limit is replaced at once, a crashed one after
``spawn_delay``, and a respawn storm pauses respawning, then ends the daemon.  When a worker dies
it releases the database claims the worker held, so its item comes back now rather than after
``claim_timeout``.  SIGTERM/SIGINT drain (a second one kills), SIGHUP replaces the workers one by
one with a freshly read config, SIGUSR1 logs what every worker is doing.

Huey's consumer is the model: signal handlers only count signals, the loop acts.  Each turn it
reaps, reads the workers' state files (readiness, the item in hand, requests), advances a
reload, and respawns what is due.  The reaping and the reading are
:class:`~statusq.daemon.watch.WorkerWatch`'s.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from statusq.config import Config, LogConfig
from statusq.daemon.child import WorkerSpec
from statusq.daemon.heartbeat import Heartbeat, Snapshot, snapshot, start_heartbeat
from statusq.daemon.processes import (
    SignalFlags,
    WorkerProcess,
    cpu_count,
    dump_lines,
    fork_worker,
    kill_tree,
    send,
)
from statusq.daemon.proctitle import set_title, supervisor_title
from statusq.daemon.rollout import Rollout
from statusq.daemon.storm import StormGuard, StormSettings
from statusq.daemon.watch import WorkerWatch
from statusq.errors import ConfigError
from statusq.metrics.supervisor import SupervisorMetrics
from statusq.queues.base import QueueManager
from statusq.runtime import Runtime
from statusq.state import (
    RESTART_COUNTERS,
    RunDir,
    SupervisorState,
    read_worker,
    remove_stale,
    worker_file,
)
from statusq.web import start_web

log = logging.getLogger("statusq.daemon")

_TICK = 0.2  # state files (time limits, readiness, requests) are read at least this often
_PUBLISH_EVERY = 2.0  # supervisor.json is rewritten at least this often, for `statusq status`


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    #: --workers; None: ``[daemon] workers`` (and 0 there: one per CPU).
    workers: int | None = None
    #: --concurrency; None: ``[daemon] concurrency``.  Applied to every config a worker gets,
    #: reloaded ones included.
    concurrency: int | None = None
    groups: frozenset[str] | None = None
    idle_exit: float | None = None
    #: What --config named: re-read on SIGHUP when the config came from no file.
    config_path: str | None = None
    #: Sets up a worker's logging (level, its slot in each line); called in the worker.
    log_setup: Callable[[LogConfig, int], None] | None = None
    #: Descriptors a worker must not keep (the pid file's lock).
    close_fds: tuple[int, ...] = ()


class QueueDaemon(WorkerWatch):
    def __init__(
        self, config: Config, options: DaemonOptions | None = None, *, on_started: Callable[[], None] | None = None
    ) -> None:
        self.config = config
        self.options = options or DaemonOptions()
        self.on_started = on_started
        self.generation = 0
        self.wanted = self._wanted(config)
        self.procs: dict[int, WorkerProcess] = {}
        self.due: dict[int, float] = {}  # slot -> when to respawn it (time.monotonic)
        self.finished: set[int] = set()  # slots whose worker exited idle (--idle-exit)
        self.empty: set[int] = set()  # slots left empty: a fresh worker was over its memory limit
        self.storm = StormGuard(StormSettings.from_config(config.daemon))
        self.rollout: Rollout | None = None
        self.reload_pending: str | None = None
        self.exit_code: int | None = None
        self.run_dir = RunDir(config.var_dir)
        self.metrics = SupervisorMetrics(config, self.run_dir)
        groups = sorted(self.options.groups) if self.options.groups else None
        self.status = SupervisorState(
            os.getpid(), groups, self.wanted, config.source, self.options.idle_exit,
            restarts=dict.fromkeys(RESTART_COUNTERS, 0),
        )  # fmt: skip
        self.flags = SignalFlags()
        self._lifeline: tuple[int, int] = (-1, -1)
        self._published = 0.0
        self.heartbeat: Heartbeat | None = None

    def _wanted(self, config: Config) -> int:
        return self.options.workers or config.daemon.workers or cpu_count()

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; the daemon's exit code."""
        try:
            remove_stale(self.config.var_dir)
            self.run_dir.create()
            self.metrics.prepare()  # before any fork: the workers inherit where to write
        except OSError as exc:
            raise ConfigError(f"cannot create {self.run_dir.path}: {exc.strerror}", key="var_dir") from None
        self._lifeline = os.pipe()
        self.flags.install()
        web = start_web(lambda: self.config, open_admin_queue)
        self.metrics.start(lambda: self.config)
        try:
            log.info(
                "supervisor pid %d: starting %d worker(s) for group(s) %s, config %s",
                os.getpid(), self.wanted, ",".join(self.status.groups or ["all"]), self.config.source or "defaults",
            )  # fmt: skip
            if self.on_started is not None:
                self.on_started()
            for slot in range(1, self.wanted + 1):
                self.spawn(slot, self.config, self.generation)
            self.heartbeat = start_heartbeat(self.config, self.status.started_at, self._snapshot())
            code = self._loop()
            log.info("supervisor stopped (exit %d)", code)
            return code
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            web.stop()
            self.metrics.stop()
            for proc in self.procs.values():  # only after an error of ours: let them drain
                send(proc.pid, signal.SIGTERM)
            self.flags.restore()
            for fd in self._lifeline:
                os.close(fd)
            self.run_dir.remove()

    def _loop(self) -> int:
        while True:
            self._publish()
            self.flags.sleep(self._wait())
            self._reap()
            stops = self.flags.take(signal.SIGTERM) + self.flags.take(signal.SIGINT)
            if stops:
                log.info("stop signal received")
                return self._drain(0)
            if self.exit_code is not None:
                return self._drain(self.exit_code)
            self.flags.take(signal.SIGCHLD)  # only there to wake us: reaping is done every turn
            self._watch()
            if self.flags.take(signal.SIGHUP):
                self._request_reload("SIGHUP")
            if self.flags.take(signal.SIGUSR1):
                self._dump()
            self._advance_rollout()
            self._respawn_due()
            if not self.procs and not self.due:
                return self._nothing_left()

    def _wait(self) -> float:
        if not self.due:
            return _TICK
        return min(_TICK, max(0.0, min(self.due.values()) - time.monotonic(), self.storm.paused()))

    def _nothing_left(self) -> int:
        if self.empty:
            log.error(
                "no worker left: slot(s) %s stay empty because a fresh worker is already over "
                "[daemon] soft_memory_limit (%s)", sorted(self.empty), self.config.daemon.soft_memory_limit,
            )  # fmt: skip
            return os.EX_CONFIG
        log.info("every worker exited idle")
        return 0

    # -- workers -----------------------------------------------------------------------------

    def spawn(self, slot: int, config: Config, generation: int, *, candidate: bool = False) -> WorkerProcess | None:
        spec = WorkerSpec(
            slot=slot,
            generation=generation,
            config=config.with_concurrency(self.options.concurrency),
            groups=self.options.groups,
            idle_exit=self.options.idle_exit,
            supervisor=os.getpid(),
            run_dir=self.run_dir.path,
            lifeline=self._lifeline[0],
            close_fds=(self._lifeline[1], *self.flags.fds, *self.options.close_fds),
            log_setup=self.options.log_setup,
        )
        try:
            pid = fork_worker(spec)
        except OSError as exc:
            delay = max(1.0, config.daemon.spawn_delay)
            log.error("cannot fork worker %d: %s; trying again in %.1fs", slot, exc, delay)
            self.due[slot] = time.monotonic() + delay
            return None
        proc = WorkerProcess(slot, pid, generation, config, time.monotonic(), worker_file(self.run_dir.path, pid))
        proc.candidate = candidate
        self.procs[pid] = proc
        self.metrics.worker_started(slot, len(self.procs))
        self._published = 0.0
        return proc

    def current(self, slot: int) -> WorkerProcess | None:
        return next((p for p in self.procs.values() if p.slot == slot and not (p.retiring or p.candidate)), None)

    def _respawn_due(self) -> None:
        if self.storm.paused():
            return
        now = time.monotonic()
        starting = self.rollout.candidate.slot if self.rollout and self.rollout.candidate else None
        for slot, when in sorted(self.due.items()):
            if when > now:
                continue
            del self.due[slot]
            if slot <= self.wanted and slot != starting and self.current(slot) is None:
                self.spawn(slot, self.config, self.generation)

    def retire(self, proc: WorkerProcess, why: str) -> None:
        log.info("%s: stopping %s after its item in hand", why, proc.name)
        proc.retiring = True
        send(proc.pid, signal.SIGTERM)

    # Watching them (state files) and their deaths (reaping, respawn decisions): WorkerWatch,
    # statusq.daemon.watch.

    # -- stopping ----------------------------------------------------------------------------

    def _drain(self, code: int) -> int:
        """Every worker finishes its item in hand; SIGKILL after shutdown_timeout or another
        signal.  What a killed worker held is released on reaping, like any death's."""
        timeout = self.config.daemon.shutdown_timeout
        self.due.clear()
        self.rollout = None
        self.status.state = "stopping"
        if self.procs:
            log.info("stopping %d worker(s), each after its item in hand (up to %gs)", len(self.procs), timeout)
        for proc in self.procs.values():
            proc.retiring = True
            send(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        killed = False
        while self.procs:
            self._publish()
            self.flags.sleep(min(_TICK, deadline - time.monotonic()))
            self._reap()
            now = time.monotonic()
            for proc in list(self.procs.values()):
                proc.state = read_worker(proc.path) or proc.state
                self._kill_if_stuck(proc, now)
            more = self.flags.take(signal.SIGTERM) + self.flags.take(signal.SIGINT)
            if self.procs and not killed and (more or now >= deadline):
                why = "second stop signal" if more else f"shutdown_timeout ({timeout:g}s) passed"
                for proc in self.procs.values():
                    item = proc.state.item if proc.state else None
                    log.warning("%s: killing %s%s", why, proc.name, f", abandoning {item.describe()}" if item else "")
                    kill_tree(proc.pid)
                killed = True
        return code

    # -- reloading ---------------------------------------------------------------------------

    def _request_reload(self, why: str) -> None:
        if self.rollout is not None:
            log.info("%s: after the reload in progress", why)
            self.reload_pending = why
            return
        source = self.config.source or self.options.config_path
        try:
            self.rollout = Rollout.read(source, self.generation + 1, self._slots_to_replace)
        except ConfigError as exc:
            log.error("%s: configuration not reloaded, the workers keep the old one: %s", why, exc)
            return
        self.status.state = "reloading"
        log.info("%s: %s read; replacing %d worker(s) one by one", why, source or "defaults", len(self.rollout.slots))

    def _slots_to_replace(self, config: Config) -> list[int]:
        return [slot for slot in range(1, self._wanted(config) + 1) if slot not in self.finished]

    def _advance_rollout(self) -> None:
        rollout = self.rollout
        if rollout is None:
            return
        done = rollout.advance(self)
        if rollout.committed and self.generation < rollout.generation:
            # The first new worker is ready: the new config works; respawns use it from now on.
            self.config, self.generation = rollout.config, rollout.generation
            self.wanted = self._wanted(rollout.config)
            self.storm.settings = StormSettings.from_config(rollout.config.daemon)
            self.empty.clear()
            self.status.generation, self.status.workers = self.generation, self.wanted
        if not done:
            return
        self.rollout = None
        self.status.state = "running"
        for proc in list(self.procs.values()):
            if proc.slot > self.wanted and not proc.retiring:
                self.retire(proc, "reload: fewer workers configured")
        self.status.reloads += 1
        log.info("reload done: %d worker(s) run generation %d", self.wanted, self.generation)
        if self.reload_pending is not None:
            why, self.reload_pending = self.reload_pending, None
            self._request_reload(why)

    # -- reporting ---------------------------------------------------------------------------

    def _publish(self) -> None:
        """Rewrite supervisor.json and the title when something changed, or every few seconds."""
        if self.heartbeat is not None:
            self.heartbeat.latest = self._snapshot()
        now = time.monotonic()
        if now - self._published < _PUBLISH_EVERY:
            return
        self._published = now
        if self.storm.paused():
            self.status.state = "backing off"
        elif self.status.state == "backing off":
            self.status.state = "running"
        self.status.empty_slots = sorted(self.empty)
        self.run_dir.write_supervisor(self.status)
        ready = sum(1 for p in self.procs.values() if p.ready and not p.retiring)
        set_title(supervisor_title(self.options.groups, f"{ready}/{self.wanted} workers, {self.status.state}"))

    def _snapshot(self) -> Snapshot:
        return snapshot(self.status.state, self.wanted, self.procs.values())

    def _dump(self) -> None:
        """SIGUSR1: every worker's state, in the log."""
        for line in dump_lines(self.status, list(self.procs.values())):
            log.info("%s", line)


def open_admin_queue(config: Config) -> QueueManager:
    """A queue manager for the web page's admin calls (backlog, dead letters, control), opened and
    closed per call: the supervisor forks, and a pooled connection would be shared with workers."""
    return Runtime(config).queue_manager()
