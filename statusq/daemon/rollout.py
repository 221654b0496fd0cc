"""Rolling replacement of workers (SIGHUP, a control ``restart``): never a moment without them.

Slot by slot, a new worker is started with the new config while the old one keeps working; only
once the new one reports ready is the old one asked to stop, after its item in hand.  A new worker
that fails to start ends the reload and leaves the old workers running (gunicorn's SIGHUP, with the
readiness wait that keeps a broken plugin from emptying the daemon).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from statusq.config import Config, load_config
from statusq.daemon.processes import WorkerProcess


class Pool(Protocol):
    """What a rollout needs from the supervisor."""

    procs: dict[int, WorkerProcess]

    def spawn(self, slot: int, config: Config, generation: int, *, candidate: bool = False) -> WorkerProcess | None: ...

    def current(self, slot: int) -> WorkerProcess | None: ...

    def retire(self, proc: WorkerProcess, why: str) -> None: ...


@dataclass(slots=True)
class Rollout:
    config: Config
    generation: int
    #: Slots still to replace, in order.
    slots: list[int]
    #: The new worker now starting; its slot's old worker runs until it is ready.
    candidate: WorkerProcess | None = None
    #: A new worker became ready: the config works, and respawns use it from then on.
    committed: bool = False

    @classmethod
    def read(cls, source: str | None, generation: int, slots: Callable[[Config], list[int]]) -> Rollout:
        """Read and validate the config anew (ConfigError if it is broken: nothing is replaced)."""
        config = load_config(source)
        return cls(config, generation, slots(config))

    def failure(self, proc: WorkerProcess, detail: str) -> str:
        if self.committed:
            return f"reload stopped half-way: the new {proc.name} {detail}; the other workers keep running"
        return f"reload failed: the new {proc.name} {detail}; the workers keep the old configuration"

    def advance(self, pool: Pool) -> bool:
        """Take the next step that can be taken now; True once no slot is left to replace."""
        candidate = self.candidate
        if candidate is not None:
            if not candidate.ready:
                return False  # a failed or too slow start is reported by the supervisor's reaping
            self.committed = True
            candidate.candidate = False
            for old in [p for p in pool.procs.values() if p.slot == candidate.slot and p is not candidate]:
                if not old.retiring:
                    pool.retire(old, f"reload: {candidate.name} is ready")
            self.candidate = None
        while self.slots and self.candidate is None:
            slot = self.slots.pop(0)
            current = pool.current(slot)
            if current is None or current.generation < self.generation:
                self.candidate = pool.spawn(slot, self.config, self.generation, candidate=True)
        return self.candidate is None
