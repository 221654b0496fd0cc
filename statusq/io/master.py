"""IoMaster: the run loop of one worker process.

Signal handlers only set flags and write to a wake-up pipe; the loop acts on them between units
of work, so an item in hand is always finished (and acked) before the process stops.
"""

from __future__ import annotations

import logging
import select
import signal
import time
from collections.abc import Callable, Sequence
from types import FrameType

from statusq.defaults import EXIT_RESTART
from statusq.io.manager import IoManager
from statusq.limits import SoftMemoryLimit
from statusq.middleware import MiddlewareChain
from statusq.wakeup import WakePipe

log = logging.getLogger(__name__)

_MAX_WAIT = 1.0  # never sleep longer, so flags and limits are looked at at least this often
_SELECT_EVERY = 0.02  # while busy, look at the other descriptors at least this often
_MEMORY_EVERY = 0.05  # and at the memory limit
_BURST = 0.005  # longest one manager is polled on its own while it has more due (IoManager.more)


class ForcedShutdown(BaseException):
    """A second stop signal: abandon the item in hand (it will be redelivered)."""


class IoMaster:
    def __init__(
        self,
        managers: Sequence[IoManager],
        *,
        memory_limit: SoftMemoryLimit | None = None,
        idle_exit: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        middleware: MiddlewareChain | None = None,
    ) -> None:
        self.managers = list(managers)
        self.middleware = middleware if middleware is not None else MiddlewareChain()
        self.memory_limit = memory_limit
        self.idle_exit = idle_exit
        self.clock = clock
        self.stopping = False
        #: Stopping, but items are still in hand: the loop goes on until they are done.
        self.draining = False
        self.exit_code = 0
        self._wakeup = WakePipe()

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            raise ForcedShutdown(f"second {signal.Signals(signum).name}")
        log.info("%s received: finishing the item in hand, then stopping", signal.Signals(signum).name)
        self.request_stop()

    def request_stop(self, exit_code: int = 0) -> None:
        """Stop after the item in hand; ``exit_code`` is what :meth:`run` then returns."""
        self.stopping = True
        # A plain stop after a "restart me" must not erase it: the supervisor still has to know.
        self.exit_code = exit_code or self.exit_code
        self._wakeup.wake()

    def run(self) -> int:
        """Loop until asked to stop, idle long enough, or over the memory limit; the exit code."""
        code = 0
        started = []
        try:
            for manager in self.managers:
                manager.start()
                started.append(manager)
            self.middleware.after_worker_boot()
            try:
                code = self._loop()
            finally:
                self.middleware.before_worker_shutdown()
        finally:
            for manager in reversed(started):
                try:
                    manager.stop()
                except Exception:
                    log.exception("stopping %s failed", manager.name)
            self._wakeup.close()  # a signal arriving now writes nothing
        return code

    def _loop(self) -> int:
        last_work = self.clock()
        last_select = 0.0
        last_memory_check = 0.0
        while not self.stopping or self._finishing():
            managers = list(self.managers)
            # Asked once per turn, not again before each poll(): with half a dozen managers, the
            # second round of calls cost more than an item's ack while items flow.
            timeouts = [m.timeout() for m in managers]
            wait = min([_MAX_WAIT, *timeouts])
            now = self.clock()
            by_fd: dict[int, IoManager] = {}
            if wait > 0 or now - last_select >= _SELECT_EVERY:
                by_fd = {fd: m for m in managers for fd in m.filenos()}
                # While a manager has work due, skip select() but for a glance now and then at
                # the other descriptors: every select() gives the GIL away to the broker's
                # receiver thread, and while items flow that cost as much as handling them.
                last_select = now
                try:
                    ready, _, _ = select.select([self._wakeup.fileno(), *by_fd], [], [], max(0.0, wait))
                except InterruptedError:
                    ready = []
                if wait > 0:  # time passed in select(): what was not due may be now
                    timeouts = [m.timeout() for m in managers]
            else:
                ready = []
            if self._wakeup.fileno() in ready:
                self._wakeup.drain()
            woken = {by_fd[fd] for fd in ready if fd in by_fd}
            for manager, due_in in zip(managers, timeouts, strict=True):
                if self.stopping and not self.draining:
                    break
                if (due_in <= 0 or manager in woken) and manager.poll():
                    last_work = self._burst(manager)
            over = None
            if self.memory_limit is not None and now - last_memory_check >= _MEMORY_EVERY:
                # Reading /proc per item cost as much as a no-op handler; a few checks a second
                # still stop a leaking worker within a handful of items.
                last_memory_check = now
                over = self.memory_limit.exceeded()
            if over is not None and not self.draining:
                log.warning(
                    "soft memory limit exceeded (rss %d MB > %d MB): exiting to be replaced",
                    over >> 20,
                    (self.memory_limit.bytes if self.memory_limit else 0) >> 20,
                )
                if not self._holding():
                    return EXIT_RESTART
                self.request_stop(EXIT_RESTART)  # once the items in hand are done
            if self._idle_long_enough(last_work):
                log.info("idle for %.1fs: exiting", self.idle_exit)
                return 0
        return self.exit_code

    def _holding(self) -> bool:
        return any(m.holding() for m in self.managers)

    def _finishing(self) -> bool:
        """Asked once stopping: go on while items are in hand, fetching no more."""
        if not self.draining:
            if not self._holding():
                return False
            self.draining = True
            log.info("stopping: finishing the items in hand first")
            for manager in self.managers:
                manager.wind_down()
        return self._holding()

    def _burst(self, manager: IoManager) -> float:
        """Poll ``manager`` again while it has more due, for up to :data:`_BURST` seconds; when
        it last did work.  A turn of the loop asks every manager for its timeout: while items
        flow, that cost as much as an item's own bookkeeping."""
        now = self.clock()
        deadline = now + _BURST
        while (not self.stopping or self.draining) and now < deadline and manager.more() and manager.poll():
            now = self.clock()
        return now

    def _idle_long_enough(self, last_work: float) -> bool:
        if self.idle_exit is None or self.clock() - last_work < self.idle_exit:
            return False
        return not any(m.busy() for m in self.managers)
