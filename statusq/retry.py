"""How many times an item is tried, and how long it waits in between."""

from __future__ import annotations

import random
from dataclasses import dataclass

from statusq.config import QueueConfig

_rng = random.Random()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int
    delay: float
    delay_max: float

    @classmethod
    def from_config(cls, queue: QueueConfig) -> RetryPolicy:
        return cls(queue.max_retries, queue.retry_delay, queue.retry_delay_max)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def gives_up(self, attempt: int) -> bool:
        """True when the attempt that just failed was the last one allowed."""
        return attempt >= self.max_attempts

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential, capped, with jitter so retries of a failed batch do not arrive together."""
        base = min(self.delay_max, self.delay * 2.0 ** max(0, attempt - 1))
        return base * (rng or _rng).uniform(0.8, 1.0)
