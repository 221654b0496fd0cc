"""The supervisor's heartbeat in the shared store, and what it does about daemons that stopped.

Every ``[daemon] beat`` seconds a thread of the supervisor writes the daemon's row
(:mod:`statusq.queues.db.daemons`), then looks at the others': a daemon silent for
:data:`~statusq.queues.db.daemons.GONE_BEATS` beats is gone, and on the database backend the
claims its workers held are released at once (the supervisor that would have released them is
dead too), instead of after ``claim_timeout``.  A row silent for ``[daemon] forget_gone`` seconds
is deleted.  On STOMP there is nothing to release: the broker redelivers a dead connection's
unacknowledged messages by itself.

A thread, not the supervisor's loop: a store that hangs (a locked SQLite file, an unreachable
PostgreSQL) must not stop the supervisor from reaping and respawning.  The loop hands the thread
a :class:`Snapshot` (one reference assignment); the thread hands nothing back.  Each beat opens
and closes its own connection: the supervisor forks, and a pooled connection would be copied
into every worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

from sqlalchemy.engine import make_url

from statusq.config import Config
from statusq.daemon.processes import WorkerProcess, release_owners
from statusq.forklock import FORK_LOCK
from statusq.queues.db.daemons import DaemonRow, DaemonStore, to_forget, to_release

log = logging.getLogger(__name__)

#: Releases the claims of the named owners (a gone daemon's workers) with a reason; how many.
Release = Callable[[list[str], str], int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the supervisor's loop last saw of its workers."""

    state: str = "starting"
    workers: int = 0
    wanted: int = 0
    in_hand: int = 0
    owners: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Identity:
    """What does not change while the daemon runs (a reload may change the config: see ``for_config``)."""

    id: str
    host: str
    pid: int
    version: str
    started_at: float
    backend: str
    config_id: str

    @classmethod
    def for_config(cls, config: Config, pid: int, started_at: float, daemon_id: str | None = None) -> Identity:
        host = socket.gethostname()
        backend, config_id = backend_identity(config)
        return cls(
            daemon_id or f"{host}:{pid}:{uuid.uuid4().hex[:8]}",
            host, pid, statusq_version(), started_at, backend, config_id,
        )  # fmt: skip


def statusq_version() -> str:
    try:
        return version("statusq")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def backend_identity(config: Config) -> tuple[str, str]:
    """Where the daemon's items come from (no password), and a digest of its whole ``[queue]``
    section: two daemons with the same digest take the same items the same way."""
    queue = config.queue
    if queue.subsystem == "db":
        where = make_url(config.db_url).render_as_string(hide_password=True)
    elif queue.subsystem == "stomp":
        where = ",".join(queue.stomp.servers) + f" vhost {queue.stomp.vhost}"
    else:
        where = "this process"
    digest = hashlib.sha256(json.dumps(queue.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return f"{queue.subsystem} {where}"[:255], digest[:12]


class Heartbeat:
    """Beats, releases gone daemons' claims, forgets long-gone ones.  :meth:`once` is one turn,
    testable with a fake clock and store; :meth:`start` runs it every ``beat`` seconds."""

    def __init__(
        self,
        identity: Identity,
        *,
        beat: float,
        forget: float,
        open_store: Callable[[], DaemonStore],
        release: Release,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.beat = beat
        self.forget = forget
        self.open_store = open_store
        self.release = release
        self.clock = clock
        #: Set by the supervisor's loop; read by the thread.
        self.latest = Snapshot()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statusq-heartbeat", daemon=True)
        self._failing = False

    def row(self, now: float) -> DaemonRow:
        me, seen = self.identity, self.latest
        return DaemonRow(
            id=me.id, host=me.host, pid=me.pid, state=seen.state, workers=seen.workers, wanted=seen.wanted,
            in_hand=seen.in_hand, version=me.version, backend=me.backend, config_id=me.config_id,
            started_at=me.started_at, beat_at=now, beat=self.beat, owners=list(seen.owners),
        )  # fmt: skip

    def once(self) -> list[DaemonRow]:
        """One beat: write this daemon's row, then deal with the others; the rows it saw.  No
        worker is forked meanwhile (:data:`~statusq.forklock.FORK_LOCK`)."""
        with FORK_LOCK:
            return self._once()

    def _once(self) -> list[DaemonRow]:
        store = self.open_store()
        try:
            now = self.clock()
            store.beat(self.row(now))
            rows = store.list()
            for gone in to_release(rows, now):
                self._release(store, gone, now)
            forgotten = [r for r in to_forget(rows, now, self.forget) if r.id != self.identity.id]
            if forgotten:
                log.info("forgetting %d daemon(s) silent for over %gs", len(forgotten), self.forget)
                store.remove(*(r.id for r in forgotten))
            return [r for r in rows if r not in forgotten]
        finally:
            store.close()

    def _release(self, store: DaemonStore, gone: DaemonRow, now: float) -> None:
        if gone.backend != self.identity.backend:
            return  # another queue: its items are not ours to hand back
        silent = now - gone.beat_at
        reason = f"daemon {gone.host} pid {gone.pid} gone (no heartbeat for {silent:.0f}s)"
        released = self.release(gone.owners, reason)
        store.mark_released(gone.id, now)
        log.warning("%s: released %d item(s) its workers held", reason, released)

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, remove: bool = True) -> None:
        """Stop beating; ``remove``: delete the row (a clean stop is not a gone daemon)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if not remove or self._thread.is_alive():
            return  # a beat hangs on the store: so would the removal; the row will show as gone
        try:
            store = self.open_store()
            try:
                store.remove(self.identity.id)
            finally:
                store.close()
        except Exception as exc:  # the daemon is stopping: say so, never fail the stop for it
            log.warning("heartbeat: cannot remove this daemon's row (it will show as gone): %s", exc)

    def _run(self) -> None:
        while True:
            self._turn()
            if self._stop.wait(self.beat):
                return

    def _turn(self) -> None:
        try:
            self.once()
        except Exception as exc:  # the store is down: beat again next time, say so once
            if not self._failing:
                log.warning("heartbeat: cannot write to the shared store (others will see this daemon gone): %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("heartbeat: the shared store answers again")
        self._failing = False


def snapshot(state: str, wanted: int, procs: Iterable[WorkerProcess]) -> Snapshot:
    """The supervisor's workers as its loop last read their state files."""
    procs = list(procs)
    states = [p.state for p in procs if p.state is not None]
    return Snapshot(
        state=state,
        workers=sum(1 for p in procs if p.ready and not p.retiring),
        wanted=wanted,
        in_hand=sum(s.in_hand for s in states),
        owners=sorted({s.consumer for s in states if s.consumer}),
    )


def start_heartbeat(config: Config, started_at: float, first: Snapshot) -> Heartbeat:
    """The daemon's beat, in the store of the config it started with (a reload that moves
    ``db_url`` moves the cluster only once the daemon restarts)."""
    heartbeat = Heartbeat(
        Identity.for_config(config, os.getpid(), started_at),
        beat=config.daemon.beat,
        forget=config.daemon.forget_gone,
        open_store=lambda: DaemonStore.open(config.db_url),
        release=release_owners(config),
    )
    heartbeat.latest = first
    heartbeat.start()
    return heartbeat
