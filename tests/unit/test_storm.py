"""statusq.daemon.storm: the respawn-storm guard, driven by a fake clock."""

from __future__ import annotations

import pytest

from statusq.config import DaemonConfig
from statusq.daemon.storm import StormGuard, StormSettings, Verdict

SETTINGS = StormSettings(attempts=3, window=10.0, retry_in=60.0, max_retry=2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def guard(clock: FakeClock) -> StormGuard:
    guard = StormGuard(SETTINGS, clock)
    guard.worker_ready()  # a daemon that has been serving: storms back off before giving up
    return guard


def crashes(guard: StormGuard, clock: FakeClock, count: int, every: float) -> list[Verdict]:
    verdicts = []
    for _ in range(count):
        verdicts.append(guard.crash().verdict)
        clock.now += every
    return verdicts


def test_up_to_attempts_crashes_in_the_window_are_respawned(guard: StormGuard, clock: FakeClock) -> None:
    assert crashes(guard, clock, 3, every=1.0) == [Verdict.RESPAWN] * 3
    assert guard.paused() == 0


def test_crashes_spread_wider_than_the_window_never_make_a_storm(guard: StormGuard, clock: FakeClock) -> None:
    # Given a worker crashing every 4 s: never more than 3 in any 10 s
    verdicts = crashes(guard, clock, 50, every=4.0)

    assert set(verdicts) == {Verdict.RESPAWN}


def test_one_crash_too_many_pauses_respawning_for_retry_in(guard: StormGuard, clock: FakeClock) -> None:
    # Given three crashes within the window
    crashes(guard, clock, 3, every=1.0)

    # When a fourth follows within it
    decision = guard.crash()

    # Then respawning pauses for retry_in, and the decision says why
    assert decision.verdict is Verdict.BACK_OFF
    assert decision.pause == 60.0 and decision.storms == 1
    assert decision.message("worker 2 (pid 9) killed by SIGSEGV") == (
        "respawn storm: 4 worker crashes within 3.0s (last: worker 2 (pid 9) killed by SIGSEGV); "
        "no respawn for 60s (pause 1 of 2)"
    )
    assert guard.paused() == 60.0
    clock.now += 59.0
    assert guard.paused() == pytest.approx(1.0)
    clock.now += 1.0
    assert guard.paused() == 0


def test_the_storm_after_max_retry_pauses_gives_up(guard: StormGuard, clock: FakeClock) -> None:
    verdicts = []
    for _ in range(3):
        verdicts += crashes(guard, clock, 4, every=0.5)
        clock.now += guard.paused()  # respawning resumes; the workers die again at once

    assert verdicts.count(Verdict.BACK_OFF) == 2
    assert verdicts[-1] is Verdict.GIVE_UP


def test_a_daemon_that_never_served_gives_up_at_its_first_storm(clock: FakeClock) -> None:
    # Given a daemon none of whose workers ever reported ready (a plugin failing at import)
    guard = StormGuard(SETTINGS, clock)

    verdicts = crashes(guard, clock, 4, every=0.2)

    assert verdicts == [Verdict.RESPAWN] * 3 + [Verdict.GIVE_UP]
    clock.now += 100
    crashes(guard, clock, 3, every=0.2)
    assert guard.crash().message("x").endswith("(last: x); no worker ever became ready: giving up")


def test_a_storm_long_after_the_last_starts_a_new_count(guard: StormGuard, clock: FakeClock) -> None:
    # Given two storms in a row (two pauses used, one left)
    for _ in range(2):
        crashes(guard, clock, 4, every=0.5)
        clock.now += guard.paused()

    # When the daemon then runs fine for an hour and storms again
    clock.now += 3600
    verdicts = crashes(guard, clock, 4, every=0.5)

    # Then that storm pauses, as a first one would, instead of giving up
    assert verdicts[-1] is Verdict.BACK_OFF


def test_max_retry_0_gives_up_at_the_first_storm(clock: FakeClock) -> None:
    guard = StormGuard(StormSettings(attempts=1, window=5.0, retry_in=1.0, max_retry=0), clock)
    guard.worker_ready()

    assert crashes(guard, clock, 2, every=1.0) == [Verdict.RESPAWN, Verdict.GIVE_UP]


def test_settings_come_from_the_daemon_section() -> None:
    daemon = DaemonConfig.model_validate(
        {"storm_attempts": 7, "storm_window": "2m", "storm_retry_in": "30s", "storm_max_retry": 1}
    )

    assert StormSettings.from_config(daemon) == StormSettings(7, 120.0, 30.0, 1)
