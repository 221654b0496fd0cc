"""Why a worker ended, and what its supervisor does about it: the exit protocol between the two.

A worker says why it stops through its exit code: 0 (asked to stop, or idle under
``--idle-exit``), :data:`~statusq.defaults.EXIT_RESTART` (over its soft memory limit after
work: replace it at once), :data:`~statusq.defaults.EXIT_MEMORY_AT_START` (over the limit before
its first item: a replacement would be too, Celery #4125), or a sysexits code for a start-up
failure (78 config or plugin, 64 usage, 69 backend down).  A signal death is a crash, unless the
supervisor itself sent the SIGKILL and knows why (a handler past its hard time limit).

Everything here is pure, so the rules are unit-tested without processes.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
from dataclasses import dataclass

from statusq.defaults import EXIT_MEMORY_AT_START, EXIT_RESTART


class Cause(enum.Enum):
    IDLE = "idle"  # exited 0 under --idle-exit: the slot is done
    STOPPED = "stopped"  # exited after being asked to (shutdown, reload, an operator's SIGTERM)
    MEMORY = "memory"  # over the soft memory limit after handling items: replaced at once
    MEMORY_AT_START = "memory at start"  # over the limit before any item: the slot stays empty
    TIME_LIMIT = "time limit"  # killed by the supervisor, stuck past time_limit + grace
    CRASH = "crash"  # anything else: a signal, an error exit, a failed start


class Respawn(enum.Enum):
    NOW = "now"
    AFTER_DELAY = "after spawn_delay"  # and only if the storm guard agrees
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class Exit:
    """How one worker process ended, classified."""

    cause: Cause
    #: The exit code (>= 0) or minus the signal number, as :func:`os.waitstatus_to_exitcode`.
    code: int
    #: For logs and dead letters: "killed by SIGKILL while handling item 7", "exited 78 at start: ...".
    detail: str
    respawn: Respawn
    #: Died before reporting ready (a start-up failure).
    at_start: bool = False

    @property
    def level(self) -> int:
        """How loud the supervisor logs it: planned ends are news, the rest are problems."""
        if self.cause in (Cause.IDLE, Cause.MEMORY) or (self.cause is Cause.STOPPED and self.code == 0):
            return logging.INFO
        return logging.WARNING if self.cause is Cause.STOPPED else logging.ERROR

    @property
    def counter(self) -> str | None:
        """Which restart counter this exit adds to, if it is replaced."""
        if self.respawn is Respawn.NEVER or self.cause is Cause.STOPPED:
            return None
        return {Cause.MEMORY: "memory", Cause.TIME_LIMIT: "time_limit"}.get(self.cause, "crash")

    @property
    def may_hold_claims(self) -> bool:
        """Whether the worker may have died with items claimed (which must then be released)."""
        return self.code < 0 or self.code not in (0, EXIT_RESTART, EXIT_MEMORY_AT_START)

    @property
    def crash_code(self) -> int:
        """The code a supervisor giving up over such crashes exits with: a start-up failure's
        sysexits code (78 for a broken plugin), else EX_SOFTWARE."""
        if os.EX_USAGE <= self.code <= os.EX_CONFIG and self.code != EXIT_RESTART:
            return self.code
        return os.EX_SOFTWARE


def describe_code(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def classify(
    code: int,
    *,
    ready: bool,
    retiring: bool,
    idle_exit: bool,
    killed_for: str | None = None,
    error: str | None = None,
    item: str | None = None,
) -> Exit:
    """Classify a worker's end from its exit code and what the supervisor knows about it.

    ``retiring``: the supervisor asked it to stop.  ``killed_for``: the supervisor SIGKILLed it
    past its hard time limit, and why.  ``error`` and ``item``: from its state file, its start-up
    error and the item it had in hand.
    """
    how = describe_code(code)
    if killed_for is not None:
        return Exit(Cause.TIME_LIMIT, code, f"{how}: {killed_for}", Respawn.NOW)
    if retiring:
        return Exit(Cause.STOPPED, code, "stopped" if code == 0 else f"{how} while stopping", Respawn.NEVER)
    if code == EXIT_RESTART:
        return Exit(Cause.MEMORY, code, "exited over its soft memory limit: replacing it", Respawn.NOW)
    if code == EXIT_MEMORY_AT_START:
        detail = error or "over its soft memory limit before handling any item"
        return Exit(Cause.MEMORY_AT_START, code, detail, Respawn.NEVER, at_start=not ready)
    if code == 0:
        if idle_exit:
            return Exit(Cause.IDLE, code, "exited idle", Respawn.NEVER)
        return Exit(Cause.STOPPED, code, "exited 0 unasked (an operator's SIGTERM?)", Respawn.AFTER_DELAY)
    if not ready:
        return Exit(Cause.CRASH, code, f"{how} at start: {error or 'no error reported'}", Respawn.AFTER_DELAY, True)
    detail = f"{how} while handling {item}" if item else how
    if error:
        detail += f": {error}"
    return Exit(Cause.CRASH, code, detail, Respawn.AFTER_DELAY)


def worker_exit_code(run_code: int, handled: int) -> int:
    """What a worker exits with after its loop returned ``run_code`` having settled ``handled``
    items: a memory restart before any item becomes :data:`EXIT_MEMORY_AT_START`, so that the
    supervisor does not replace it with another worker just as big (Celery #4125)."""
    if run_code == EXIT_RESTART and handled == 0:
        return EXIT_MEMORY_AT_START
    return run_code
