"""statusq.limits: the per-item time limit and the soft memory limit, on fake /proc and cgroup files."""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq import limits
from statusq.errors import ItemTimeLimitExceeded
from statusq.limits import MemoryProbe, SoftMemoryLimit, resolve_memory_limit, time_limit

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1 << 20


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    path = tmp_path / "proc"
    (path / "self").mkdir(parents=True)
    return path


@pytest.fixture
def cgroup(tmp_path: Path) -> Path:
    path = tmp_path / "cgroup"
    path.mkdir()
    return path


@pytest.fixture
def no_rlimit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real process may run under `ulimit -v`; these tests decide the address-space limit."""
    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(limits.resource, "getrlimit", lambda which: unlimited)


def set_rss(proc: Path, nbytes: int, pid: str = "self") -> None:
    (proc / pid).mkdir(exist_ok=True)
    (proc / pid / "statm").write_text(f"99999 {nbytes // PAGE} 300 10 0 500 0\n")


# --- MemoryProbe ------------------------------------------------------------------------------


def test_rss_is_resident_pages_times_page_size(proc: Path, cgroup: Path) -> None:
    set_rss(proc, 50 * MB)

    assert MemoryProbe(proc, cgroup).rss() == (50 * MB // PAGE) * PAGE


def test_rss_of_another_pid(proc: Path, cgroup: Path) -> None:
    set_rss(proc, 8 * MB, pid="4242")

    assert MemoryProbe(proc, cgroup).rss(4242) == (8 * MB // PAGE) * PAGE


@pytest.mark.parametrize("statm", [None, "", "garbage here", "12"])
def test_unreadable_rss_is_zero(proc: Path, cgroup: Path, statm: str | None) -> None:
    if statm is not None:
        (proc / "self" / "statm").write_text(statm)

    assert MemoryProbe(proc, cgroup).rss() == 0


def test_hard_bound_is_the_cgroup_memory_max(proc: Path, cgroup: Path) -> None:
    (cgroup / "memory.max").write_text("1073741824\n")

    assert MemoryProbe(proc, cgroup).hard_bound() == 1 << 30


@pytest.mark.usefixtures("no_rlimit")
@pytest.mark.parametrize("memory_max", ["max\n", None, "nonsense"])
def test_hard_bound_without_a_cgroup_limit_is_memtotal(proc: Path, cgroup: Path, memory_max: str | None) -> None:
    if memory_max is not None:
        (cgroup / "memory.max").write_text(memory_max)
    (proc / "meminfo").write_text("MemTotal:        2048 kB\nMemFree:          512 kB\n")

    assert MemoryProbe(proc, cgroup).hard_bound() == 2048 * 1024


def test_hard_bound_prefers_rlimit_as_over_memtotal(proc: Path, cgroup: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cgroup / "memory.max").write_text("max\n")
    (proc / "meminfo").write_text("MemTotal: 2048 kB\n")
    monkeypatch.setattr(limits.resource, "getrlimit", lambda which: (512 * MB, resource.RLIM_INFINITY))

    assert MemoryProbe(proc, cgroup).hard_bound() == 512 * MB


@pytest.mark.usefixtures("no_rlimit")
def test_hard_bound_falls_back_to_physical_pages(proc: Path, cgroup: Path) -> None:
    assert MemoryProbe(proc, cgroup).hard_bound() == PAGE * os.sysconf("SC_PHYS_PAGES")


# --- resolve_memory_limit and SoftMemoryLimit -------------------------------------------------


def test_percentage_is_taken_of_the_hard_bound(proc: Path, cgroup: Path) -> None:
    (cgroup / "memory.max").write_text(str(1000 * MB))
    probe = MemoryProbe(proc, cgroup)

    assert resolve_memory_limit("50%", probe) == 500 * MB
    assert resolve_memory_limit("12.5%", probe) == 125 * MB
    assert resolve_memory_limit(200 * MB, probe) == 200 * MB
    assert resolve_memory_limit(0, probe) == 0


def test_soft_limit_exceeded_returns_the_rss(proc: Path, cgroup: Path) -> None:
    limit = SoftMemoryLimit(100 * MB, MemoryProbe(proc, cgroup))

    set_rss(proc, 150 * MB)

    assert limit.exceeded() == (150 * MB // PAGE) * PAGE


def test_soft_limit_not_exceeded(proc: Path, cgroup: Path) -> None:
    limit = SoftMemoryLimit(100 * MB, MemoryProbe(proc, cgroup))

    set_rss(proc, 60 * MB)

    assert limit.exceeded() is None


def test_soft_limit_from_a_percentage(proc: Path, cgroup: Path) -> None:
    (cgroup / "memory.max").write_text(str(400 * MB))
    limit = SoftMemoryLimit("25%", MemoryProbe(proc, cgroup))
    set_rss(proc, 101 * MB)

    assert limit.bytes == 100 * MB
    assert limit.exceeded() is not None


def test_zero_soft_limit_is_off(proc: Path, cgroup: Path) -> None:
    limit = SoftMemoryLimit(0, MemoryProbe(proc, cgroup))
    set_rss(proc, 10_000 * MB)

    assert limit.exceeded() is None


def test_unreadable_rss_never_exceeds(proc: Path, cgroup: Path) -> None:
    assert SoftMemoryLimit(1, MemoryProbe(proc, cgroup)).exceeded() is None


# --- time_limit -------------------------------------------------------------------------------


def test_time_limit_interrupts_a_busy_loop() -> None:
    safety_net = time.monotonic() + 10  # only reached if the limit never fires

    with pytest.raises(ItemTimeLimitExceeded, match=r"time limit of 0\.2s"), time_limit(0.2):
        while time.monotonic() < safety_net:
            pass


def test_time_limit_restores_the_signal_handler_and_disarms() -> None:
    # Given no outer timer (pytest-timeout's alarm is suspended for this test and restored)
    outer = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        before = signal.getsignal(signal.SIGALRM)

        with time_limit(5):
            assert signal.getsignal(signal.SIGALRM) is not before
            assert signal.getitimer(signal.ITIMER_REAL)[0] > 0

        assert signal.getsignal(signal.SIGALRM) is before
        assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer)


@pytest.mark.parametrize("seconds", [0, -1])
def test_time_limit_zero_is_off(seconds: float) -> None:
    before = signal.getsignal(signal.SIGALRM)
    timer_before = signal.getitimer(signal.ITIMER_REAL)[0] > 0

    with time_limit(seconds):
        assert signal.getsignal(signal.SIGALRM) is before
        assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == timer_before


def test_time_limit_is_off_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with time_limit(0.01):
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(5)

    assert errors == []


def test_time_limit_restores_an_outer_timer() -> None:
    with time_limit(30):
        with time_limit(10):
            pass
        remaining, _interval = signal.getitimer(signal.ITIMER_REAL)

    assert remaining > 0


@pytest.fixture
def no_outer_timer() -> Iterator[None]:
    """The worker's situation: no other timer running (pytest-timeout's is put aside)."""
    left, interval = signal.getitimer(signal.ITIMER_REAL)
    signal.setitimer(signal.ITIMER_REAL, 0)
    handler = signal.getsignal(signal.SIGALRM)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if left:
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_item_timer_arms_once_while_items_flow(no_outer_timer: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # A timer call per item cost more than a no-op item's bookkeeping: while items follow one
    # another within the limit, the alarm armed for the first one is left to run
    calls: list[float] = []
    real = signal.setitimer
    monkeypatch.setattr(
        limits.signal, "setitimer", lambda which, seconds, *a: calls.append(seconds) or real(which, seconds)
    )
    timer = limits.ItemTimer(30.0)

    for _ in range(100):
        with timer:
            pass

    assert calls == [30.0]


def test_item_timer_measures_each_item_from_its_own_start(no_outer_timer: None) -> None:
    # Given an alarm armed by a first item, which a second item finds still pending
    timer = limits.ItemTimer(0.3)
    with timer:
        spin(0.2)
    started = time.monotonic()

    # When the second item runs past the limit
    with pytest.raises(ItemTimeLimitExceeded), timer:
        spin(5.0)

    # Then it was stopped at its own limit, not at the first item's (the alarm was re-armed)
    assert time.monotonic() - started >= 0.3 - 0.01


def test_an_alarm_with_no_item_in_hand_stops_nothing(no_outer_timer: None) -> None:
    timer = limits.ItemTimer(0.05)
    with timer:
        pass
    spin(0.15)  # the alarm fires while idle: nothing to stop, nothing raised

    with timer:  # and the next item is timed afresh
        spin(0.01)


def test_item_timer_brings_a_pending_alarm_forward_for_a_shorter_limit(no_outer_timer: None) -> None:
    # Given an alarm left pending by an item of a transport with a long limit
    timer = limits.ItemTimer(0.0)
    with timer(30.0):
        pass

    # When an item of a transport with a 0.1 s limit runs on, it is stopped at its own limit
    with pytest.raises(ItemTimeLimitExceeded, match=r"time limit of 0\.1s"), timer(0.1):
        spin(5.0)

    # And an item of a transport without a limit is not timed at all
    with timer(0.0):
        spin(0.15)
