"""statusq.retry: how many attempts an item gets and how long it waits in between."""

from __future__ import annotations

import random

import pytest

from statusq.config import QueueConfig
from statusq.retry import RetryPolicy


class TopOfRange(random.Random):
    """Jitter that always picks the top of its range, so the base delay shows through."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_gives_up_at_max_retries_plus_one_attempts() -> None:
    policy = RetryPolicy(max_retries=3, delay=1.0, delay_max=60.0)

    assert policy.max_attempts == 4
    assert [policy.gives_up(attempt) for attempt in range(1, 6)] == [False, False, False, True, True]


def test_no_retries_gives_up_after_the_first_attempt() -> None:
    assert RetryPolicy(max_retries=0, delay=1.0, delay_max=1.0).gives_up(1)


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_retries=10, delay=2.0, delay_max=20.0)

    delays = [policy.backoff(attempt, TopOfRange()) for attempt in range(1, 7)]

    assert delays == [2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


def test_backoff_of_attempt_zero_is_the_first_delay() -> None:
    assert RetryPolicy(5, 3.0, 60.0).backoff(0, TopOfRange()) == 3.0


@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_jitter_stays_within_80_to_100_percent_of_the_base(attempt: int) -> None:
    policy = RetryPolicy(max_retries=10, delay=1.0, delay_max=100.0)
    base = min(100.0, 2.0 ** (attempt - 1))
    rng = random.Random(1234)

    delays = [policy.backoff(attempt, rng) for _ in range(500)]

    assert all(0.8 * base <= d <= base for d in delays)
    assert max(delays) - min(delays) > 0.1 * base  # jittered, not constant


def test_same_seed_same_delays() -> None:
    policy = RetryPolicy(5, 1.0, 60.0)

    first = [policy.backoff(a, random.Random(7)) for a in range(1, 5)]
    again = [policy.backoff(a, random.Random(7)) for a in range(1, 5)]

    assert first == again


def test_backoff_without_rng_is_in_range() -> None:
    assert 1.6 <= RetryPolicy(5, 2.0, 60.0).backoff(1) <= 2.0


def test_from_config() -> None:
    queue = QueueConfig(max_retries=2, retry_delay="10ms", retry_delay_max="1m")

    assert RetryPolicy.from_config(queue) == RetryPolicy(2, 0.01, 60.0)
