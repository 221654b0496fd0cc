"""The worker process: what runs in a child the supervisor forked, until it ends with ``os._exit``.

The supervisor has loaded and validated the config but imported no plugin, so each worker loads
its plugins itself: a plugin that raises at import ends this process with exit 78 (and its error
in the state file), never the supervisor.  The child never returns into the supervisor's code:
every path, exceptions included, ends in ``os._exit``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import NoReturn, Protocol

from statusq.config import Config, LogConfig
from statusq.control import ControlActions
from statusq.daemon.exits import worker_exit_code
from statusq.daemon.lifeline import Lifeline, die_with_parent
from statusq.daemon.proctitle import ProcTitle
from statusq.daemon.reporter import StateReporter
from statusq.defaults import EXIT_MEMORY_AT_START, EXIT_RESTART
from statusq.errors import StatusqError
from statusq.io.manager import IoManager
from statusq.io.master import IoMaster
from statusq.logs import ItemLogContext
from statusq.middleware import Middleware
from statusq.reporting import sentry
from statusq.runtime import Runtime
from statusq.state import WorkerState, worker_file
from statusq.tracing import setup as tracing
from statusq.worker import build_worker, check_groups

log = logging.getLogger("statusq.worker")

#: Signals the supervisor handles; blocked around fork() so none reaches a child's inherited
#: handlers before the child has installed its own.
SUPERVISOR_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD})


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    slot: int
    generation: int
    config: Config
    groups: frozenset[str] | None
    idle_exit: float | None
    supervisor: int
    #: The supervisor's folder of state files; this worker writes ``worker-<its pid>.json``.
    run_dir: Path
    #: The read end of the supervisor's lifeline pipe.
    lifeline: int
    #: The supervisor's own descriptors (the lifeline's write end, its wake-up pipe, the pid file),
    #: closed at once: a worker holding the lifeline's write end would never see it break.
    close_fds: tuple[int, ...]
    #: Sets up logging for this worker (level from its config, its slot in each line).
    log_setup: Callable[[LogConfig, int], None] | None = None


def run_worker(spec: WorkerSpec) -> NoReturn:
    """The whole life of a forked worker."""
    code = os.EX_SOFTWARE
    try:
        code = _run(spec)
    except BaseException:
        with contextlib.suppress(BaseException):
            log.exception("worker %d failed", spec.slot)
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reset_process(spec: WorkerSpec) -> None:
    """Undo what the fork copied from the supervisor: its handlers, wake-up fd and descriptors."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until the loop exists: nothing to finish yet
    # A terminal's Ctrl-C reaches the whole process group; stopping is the supervisor's call, and
    # it tells each worker with SIGTERM.  Reloads and state dumps are its business too.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in spec.close_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    die_with_parent(signal.SIGTERM)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISOR_SIGNALS)


def _forwarding_actions(reporter: StateReporter) -> Callable[[Runtime, IoMaster], ControlActions]:
    """Control commands under a supervisor: sites are reloaded here; a restart (rolling, no moment
    without workers) and a shutdown are the supervisor's to carry out, so they are asked of it."""

    def actions(runtime: Runtime, master: IoMaster) -> ControlActions:
        return ControlActions(
            reload=runtime.sites.reload_all,
            restart=lambda: reporter.request("restart"),
            shutdown=lambda: reporter.request("shutdown"),
        )

    return actions


def _stop_on_sigterm(master: IoMaster) -> None:
    """SIGTERM (from the supervisor, systemd or the kernel at the supervisor's death) finishes the
    item in hand.  Repeats are harmless: escalating is the supervisor's decision (SIGKILL)."""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not master.stopping:
            log.info("SIGTERM: finishing the item in hand, then exiting")
        master.request_stop()

    signal.signal(signal.SIGTERM, on_sigterm)


class Deferred(Protocol):
    """Something that writes lazily: due for :meth:`flush` since ``dirty_since`` (or not)."""

    @property
    def dirty_since(self) -> float | None: ...

    def flush(self) -> None: ...


class FlushWhenIdle(IoManager):
    """Writes what the state file and the process title deferred ("idle") when no next item
    came within ``delay``: while items flow, each one's "busy" write carries it instead."""

    name = "flush"

    def __init__(self, deferred: Sequence[Deferred], delay: float = 0.01) -> None:
        self.deferred = list(deferred)
        self.delay = delay

    def timeout(self) -> float:
        due = [since for d in self.deferred if (since := d.dirty_since) is not None]
        return min(due) + self.delay - time.monotonic() if due else math.inf

    def poll(self) -> bool:
        for deferred in self.deferred:
            deferred.flush()
        return False


def _log_context(config: LogConfig) -> list[Middleware]:
    """The item's fields in log lines, where the format shows them (two hooks per item, else)."""
    return [ItemLogContext()] if config.format == "json" or config.target == "journald" else []


def _observers(config: Config) -> list[Middleware]:
    """A worker's tracer provider and error reporter, set up after its fork (each runs a thread
    of its own that sends in the background)."""
    return [*tracing.worker_middleware(config), *sentry.worker_middleware(config)]


def _run(spec: WorkerSpec) -> int:
    _reset_process(spec)
    if os.getppid() != spec.supervisor:
        return 0  # the supervisor died while forking us
    if spec.log_setup is not None:
        spec.log_setup(spec.config.log, spec.slot)
    title = ProcTitle(spec.slot, spec.groups)
    title.show("starting")
    state = WorkerState(spec.slot, os.getpid(), spec.generation)
    reporter = StateReporter(worker_file(spec.run_dir, os.getpid()), state)
    reporter.write()
    lifeline = Lifeline(spec.lifeline)
    try:
        runtime = Runtime(spec.config)
        groups = set(spec.groups) if spec.groups else None
        check_groups(runtime, groups)
        parts = build_worker(
            runtime,
            groups=groups,
            idle_exit=spec.idle_exit,
            middleware=[reporter, title, *_log_context(spec.config.log), *_observers(spec.config)],
            extra_managers=[FlushWhenIdle([reporter, title]), lifeline],
            actions=_forwarding_actions(reporter),
        )
    except StatusqError as exc:
        log.error("cannot start: %s", exc)
        reporter.failed(str(exc))
        return exc.exit_code
    except Exception as exc:
        log.exception("cannot start")
        reporter.failed(f"{type(exc).__name__}: {exc}")
        return os.EX_SOFTWARE
    master = parts.master
    lifeline.on_lost = master.request_stop
    if parts.policies is not None:
        reporter.time_limit_of = parts.policies.time_limit
    limit = parts.memory_limit
    over = limit.exceeded()
    if over is not None:
        return _over_limit_at_start(reporter, over, limit.bytes)
    _stop_on_sigterm(master)
    reporter.ready(parts.consumer.claim_owner)
    title.show("idle")
    try:
        code = worker_exit_code(master.run(), reporter.state.handled_total)
    except Exception as exc:
        log.exception("the worker loop failed")
        reporter.failed(f"{type(exc).__name__}: {exc}")
        return os.EX_SOFTWARE
    if code == EXIT_MEMORY_AT_START:
        return _over_limit_at_start(reporter, limit.probe.rss(), limit.bytes)
    title.show("exiting (memory limit)" if code == EXIT_RESTART else "exiting")
    reporter.exiting()
    return code


def _over_limit_at_start(reporter: StateReporter, rss: int, limit: int) -> int:
    message = (
        f"over its soft memory limit before handling any item (rss {rss >> 20} MB > {limit >> 20} MB): "
        "a new worker would be too; raise [daemon] soft_memory_limit"
    )
    log.error("%s", message)
    reporter.failed(message)
    return EXIT_MEMORY_AT_START
