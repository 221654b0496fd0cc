"""Per-process state files: how workers tell their supervisor, and ``statusq status``, what they do.

Layout: ``<var_dir>/run/<supervisor pid>/supervisor.json`` and one ``worker-<pid>.json`` per
worker.  Each file has one writer (its process) and is replaced atomically (write, then rename),
so a reader sees the old state or the new one, never half of either.  A file rather than a pipe:
a worker never blocks on a busy supervisor, and the last words of a worker that exited (its
start-up error, its consumer id) are still there when the supervisor reaps it.

What the supervisor reads from a worker's file: ``ready`` (for rolling reloads), ``consumer``
(whose database claims to release if it dies), ``item`` with its start time (the hard time
limit), ``error`` (named when it gives up over a storm) and ``request`` (a control command that
only the supervisor can carry out: restart, shutdown).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from statusq.defaults import RUN_DIR
from statusq.outcome import Outcome

log = logging.getLogger(__name__)

SUPERVISOR_FILE = "supervisor.json"
#: The restart counters shown by ``statusq status``, per cause (``SupervisorState.restarts``;
#: which exit counts as which: :attr:`statusq.daemon.exits.Exit.counter`).
RESTART_COUNTERS = ("crash", "memory", "time_limit")


@dataclass(slots=True)
class ItemInHand:
    id: str
    site: str
    transport: str
    attempt: int
    #: Wall clock, for people.
    since: float
    #: time.monotonic(): one clock for every process on a Linux host, for the hard time limit.
    since_monotonic: float
    #: The limit the worker applies to it (its transport's); None: ``[daemon] time_limit``.
    time_limit: float | None = None

    def describe(self) -> str:
        return f"item id={self.id} site={self.site} transport={self.transport} attempt={self.attempt}"


#: The outcomes a worker counts as handled (a paused item's hold is none: it did not run).
COUNTED = (Outcome.DONE, Outcome.RETRY, Outcome.DEAD)


@dataclass(slots=True)
class WorkerState:
    slot: int
    pid: int
    generation: int
    state: str = "starting"  # starting, idle, busy, exiting, failed
    consumer: str | None = None
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    #: The oldest item in hand (what the supervisor's hard time limit watches)...
    item: ItemInHand | None = None
    #: ...and the others, oldest first, in a worker with several in hand ([daemon] concurrency).
    others: list[ItemInHand] = field(default_factory=list)
    handled: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in COUNTED})
    rss: int = 0
    error: str | None = None
    request: str | None = None
    #: Counts requests, so that the same command sent twice is seen twice.
    requests: int = 0
    updated_at: float = 0.0

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    @property
    def handled_total(self) -> int:
        return sum(self.handled.values())

    def to_dict(self) -> dict[str, Any]:
        """What :func:`dataclasses.asdict` returns, at a fraction of its cost (twice per item)."""
        data = {name: getattr(self, name) for name in WORKER_FIELDS}
        if self.item is not None:
            data["item"] = {name: getattr(self.item, name) for name in ITEM_FIELDS}
        data["others"] = [{name: getattr(other, name) for name in ITEM_FIELDS} for other in self.others]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerState:
        item = data.get("item")
        others = [ItemInHand(**other) for other in data.get("others") or []]
        return cls(**{**data, "item": ItemInHand(**item) if item else None, "others": others})

    @property
    def in_hand(self) -> int:
        """Items being handled now."""
        return (self.item is not None) + len(self.others)


WORKER_FIELDS = tuple(f.name for f in fields(WorkerState))
ITEM_FIELDS = tuple(f.name for f in fields(ItemInHand))


@dataclass(slots=True)
class SupervisorState:
    pid: int
    groups: list[str] | None
    workers: int
    config: str | None
    idle_exit: float | None = None
    state: str = "starting"  # starting, running, reloading, backing off, stopping
    generation: int = 0
    started_at: float = field(default_factory=time.time)
    restarts: dict[str, int] = field(default_factory=dict)
    reloads: int = 0
    #: Slots left empty because a fresh worker was already over the memory limit.
    empty_slots: list[int] = field(default_factory=list)
    updated_at: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupervisorState:
        return cls(**data)


def worker_file(folder: Path, pid: int) -> Path:
    return folder / f"worker-{pid}.json"


def describe_worker(worker: WorkerState, now: float | None = None) -> str:
    """One line for logs (SIGUSR1) and ``statusq status``."""
    now = time.time() if now is None else now
    doing = worker.state
    if worker.state == "busy" and worker.item is not None:
        doing = f"busy {now - worker.item.since:.1f}s on {worker.item.describe()}{_more(worker)}"
    counts = ", ".join(f"{outcome} {count}" for outcome, count in worker.handled.items())
    return (
        f"{doing}; rss {worker.rss >> 20} MB; handled {worker.handled_total} ({counts}); "
        f"up {now - worker.started_at:.0f}s"
    )


WORKER_COLUMNS = ("WORKER", "PID", "STATE", "ITEM", "RSS", "DONE", "RETRY", "DEAD", "UP")


def worker_row(worker: WorkerState, now: float | None = None) -> list[str]:
    """A row of ``statusq status``'s worker table."""
    now = time.time() if now is None else now
    item = worker.item
    doing = f"{item.transport} id={item.id} site={item.site} ({now - item.since:.1f}s){_more(worker)}" if item else "-"
    counts = [str(worker.handled.get(outcome.value, 0)) for outcome in COUNTED]
    return [
        str(worker.slot),
        str(worker.pid),
        worker.state,
        doing,
        f"{worker.rss >> 20}MB",
        *counts,
        _age(now - worker.started_at),
    ]


def _more(worker: WorkerState) -> str:
    return f" +{len(worker.others)} more" if worker.others else ""


def daemon_summary(supervisor: SupervisorState, now: float | None = None) -> str:
    now = time.time() if now is None else now
    restarts = ", ".join(f"{cause.replace('_', ' ')} {count}" for cause, count in supervisor.restarts.items())
    empty = f"; slots left empty (memory at start): {supervisor.empty_slots}" if supervisor.empty_slots else ""
    return (
        f"daemon pid {supervisor.pid} ({supervisor.state}, up {_age(now - supervisor.started_at)}): "
        f"{supervisor.workers} worker(s) [{','.join(supervisor.groups or ['all'])}]; "
        f"restarts: {restarts}; reloads: {supervisor.reloads}{empty}"
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_worker(path: Path) -> WorkerState | None:
    """A worker's state, or None when there is none (yet) or it cannot be read consistently.

    Worker files are rewritten in place (see :class:`StateReporter`), so a read may overlap a
    write: the file is read until two reads in a row agree, which a torn read never does.
    """
    try:
        previous = path.read_bytes()
        for _ in range(5):
            current = path.read_bytes()
            if current == previous:
                break
            previous = current
        else:
            return None
        data = json.loads(current)
        return WorkerState.from_dict(data) if isinstance(data, dict) else None
    except (OSError, TypeError, ValueError):
        return None  # gone, half-written, or written by another version: not ours to interpret


class RunDir:
    """One supervisor's folder of state files."""

    def __init__(self, var_dir: str | os.PathLike[str], pid: int | None = None) -> None:
        self.pid = pid if pid is not None else os.getpid()
        self.path = Path(var_dir) / RUN_DIR / str(self.pid)

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def worker_path(self, pid: int) -> Path:
        return worker_file(self.path, pid)

    @property
    def supervisor_path(self) -> Path:
        return self.path / SUPERVISOR_FILE

    def write_supervisor(self, state: SupervisorState) -> None:
        state.updated_at = time.time()
        try:
            write_json(self.supervisor_path, asdict(state))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.supervisor_path, exc)

    def supervisor(self) -> SupervisorState | None:
        data = read_json(self.supervisor_path)
        try:
            return SupervisorState.from_dict(data) if data else None
        except (TypeError, ValueError):
            return None

    def workers(self) -> list[WorkerState]:
        found = [read_worker(p) for p in sorted(self.path.glob("worker-*.json"))]
        return sorted((w for w in found if w is not None), key=lambda w: (w.slot, w.generation))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: exists, and is not a zombie waiting for a parent that may never reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def running_daemons(var_dir: str | os.PathLike[str]) -> list[tuple[SupervisorState, list[WorkerState]]]:
    """The supervisors with a folder under ``var_dir/run`` that are still alive, and their workers."""
    root = Path(var_dir) / RUN_DIR
    found = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not entry.name.isdigit() or not alive(int(entry.name)):
            continue
        run = RunDir(var_dir, int(entry.name))
        supervisor = run.supervisor()
        if supervisor is not None:
            found.append((supervisor, [w for w in run.workers() if alive(w.pid)]))
    return found


def remove_stale(var_dir: str | os.PathLike[str]) -> None:
    """Delete folders left by supervisors that died without cleaning up (SIGKILL, power loss),
    once none of their workers is alive either."""
    root = Path(var_dir) / RUN_DIR
    for entry in root.iterdir() if root.is_dir() else []:
        if not entry.name.isdigit() or alive(int(entry.name)):
            continue
        run = RunDir(var_dir, int(entry.name))
        if not any(alive(w.pid) for w in run.workers()):
            run.remove()


def remove_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
