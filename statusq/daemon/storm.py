"""The respawn-storm guard: keeps a supervisor from spinning on workers that die as fast as it
starts them.

The rules are circus's flapping plugin (``attempts``/``window``/``retry_in``/``max_retry``) in a
pure object: more than ``attempts`` crashes within ``window`` seconds is a storm; respawning then
pauses for ``retry_in`` seconds, and the storm after ``max_retry`` pauses makes the supervisor
give up.  One change: a daemon none of whose workers ever became ready gives up at its first
storm.  Nothing is being served that waiting would protect, the cause is almost always a broken
plugin or config, and the operator (or systemd) should see the error now rather than after
minutes of back-off.

Only crashes are fed in: idle exits, memory recycling and the supervisor's own kills (time limit,
shutdown, reload) are planned and never make a storm.  The clock is a parameter, so the tests
run the rules with a fake one.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from statusq.config import DaemonConfig


class Verdict(enum.Enum):
    RESPAWN = "respawn"  # after spawn_delay
    BACK_OFF = "back off"  # no respawn until the pause ends
    GIVE_UP = "give up"  # stop the daemon, exit non-zero


@dataclass(frozen=True, slots=True)
class StormSettings:
    attempts: int
    window: float
    retry_in: float
    max_retry: int

    @classmethod
    def from_config(cls, daemon: DaemonConfig) -> StormSettings:
        return cls(daemon.storm_attempts, daemon.storm_window, daemon.storm_retry_in, daemon.storm_max_retry)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    #: Crashes within the window when this was decided (for messages).
    crashes: int
    #: Seconds between the first and the last of those crashes.
    span: float = 0.0
    #: Seconds until respawns may resume (BACK_OFF only).
    pause: float = 0.0
    #: Pauses so far in the current run of storms, this one included.
    storms: int = 0
    #: The settings' max_retry, and whether a worker ever became ready (for messages).
    max_retry: int = 0
    served: bool = True

    def describe(self) -> str:
        return f"{self.crashes} worker crashes within {self.span:.1f}s"

    def message(self, last: str) -> str:
        """What the supervisor logs about a storm; ``last`` names the last crash and its cause."""
        storm = f"respawn storm: {self.describe()} (last: {last})"
        if self.verdict is Verdict.BACK_OFF:
            return f"{storm}; no respawn for {self.pause:g}s (pause {self.storms} of {self.max_retry})"
        why = f"after {self.storms} pause(s)" if self.served else "no worker ever became ready"
        return f"{storm}; {why}: giving up"


class StormGuard:
    """Counts crashes in a sliding window and decides what the supervisor does about each."""

    def __init__(self, settings: StormSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._crashes: deque[float] = deque()
        self._storms = 0
        self._last_storm: float | None = None
        self._resume_at = 0.0
        #: Whether a worker ever reported ready: until then a storm gives up at once.
        self.served = False

    def worker_ready(self) -> None:
        self.served = True

    def crash(self) -> Decision:
        """Record one crash and say whether to respawn, pause, or give up."""
        now = self.clock()
        settings = self.settings
        self._crashes.append(now)
        while now - self._crashes[0] > settings.window:
            self._crashes.popleft()
        count = len(self._crashes)
        if count <= settings.attempts:
            return Decision(Verdict.RESPAWN, count)
        span = now - self._crashes[0]
        self._crashes.clear()
        if self._last_storm is not None and now - self._last_storm > settings.retry_in + settings.window:
            self._storms = 0  # the previous storm ended long ago: this one starts a new run
        self._last_storm = now
        if not self.served or self._storms >= settings.max_retry:
            return Decision(Verdict.GIVE_UP, count, span, 0.0, self._storms, settings.max_retry, self.served)
        self._storms += 1
        self._resume_at = now + settings.retry_in
        return Decision(Verdict.BACK_OFF, count, span, settings.retry_in, self._storms, settings.max_retry)

    def paused(self) -> float:
        """Seconds left in the current pause; 0 when respawning may go on."""
        return max(0.0, self._resume_at - self.clock())
