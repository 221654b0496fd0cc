"""The dispatcher inside a worker's loop: an IoManager driven by a timer, one small step per poll.

Each :meth:`DispatcherManager.poll` does one bounded thing (a tick, claiming and planning one
queue, or enqueueing one chunk of a run), so the worker's loop keeps handling items, signals and
its memory limit between them however large a run is, and a queue whose source hangs or fails
holds up only its own turn.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

from statusq.dispatcher.runner import ActiveRun, Dispatcher, Report
from statusq.io.manager import IoManager
from statusq.periodic import QueueSpec

log = logging.getLogger(__name__)


class DispatcherManager(IoManager):
    name = "dispatcher"

    def __init__(self, dispatcher: Dispatcher, tick: float, *, clock: Callable[[], float] = time.time) -> None:
        self.dispatcher = dispatcher
        self.tick = tick
        self.clock = clock
        self._next_tick = 0.0
        self._due: collections.deque[QueueSpec] = collections.deque()
        self._active: ActiveRun | None = None

    def timeout(self) -> float:
        if self._active is not None or self._due:
            return 0.0
        return self._next_tick - self.clock()

    def busy(self) -> bool:
        """A run half enqueued is finished before ``--idle-exit`` may stop the worker."""
        return self._active is not None

    def poll(self) -> bool:
        try:
            return self._poll()
        except Exception as exc:
            # The database is down, most likely: never let it end the worker; look again next tick.
            log.error("dispatcher tick failed, retrying in %.1fs: %s", self.tick, exc)
            self._active = None
            self._due.clear()
            self._next_tick = self.clock() + self.tick
            return False

    def _poll(self) -> bool:
        if self._active is not None:
            report = self.dispatcher.step(self._active)
            if report is None:
                return True
            self._active = None
            self._log(report)
            return report.status == "dispatched"
        if self._due:
            started = self.dispatcher.begin(self._due.popleft())
            if isinstance(started, Report):
                self._log(started)
            else:
                self._active = started
            return False
        tick = self.dispatcher.due()
        self._due.extend(tick.due)
        now = self.clock()
        self._next_tick = now + self.tick if tick.soonest is None else min(now + self.tick, tick.soonest)
        return False

    def _log(self, report: Report) -> None:
        # Runs dispatched and failures are logged by the dispatcher, with their numbers and reasons.
        if report.status not in ("dispatched", "failed", "lost"):
            log.debug("%s", report)

    def stop(self) -> None:
        """Let go of a claim held mid-run (the rest of the run is picked up by the next one)."""
        active, self._active = self._active, None
        try:
            if active is not None and active.started:
                self.dispatcher.store.seal(active.spec.name, self.dispatcher.owner, active.seq, self.clock())
            elif active is not None:
                self.dispatcher.store.drop_run(active.spec.name, active.seq)
                self.dispatcher.store.release(active.spec.name, self.dispatcher.owner)
        finally:
            self.dispatcher.store.close()
