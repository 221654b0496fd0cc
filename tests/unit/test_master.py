"""statusq.io.master: the worker's run loop, driven by fake IoManagers and a fake clock."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable, Iterator

import pytest

from statusq.defaults import EXIT_RESTART
from statusq.io.manager import IoManager
from statusq.io.master import ForcedShutdown, IoMaster
from statusq.limits import SoftMemoryLimit

MB = 1 << 20
RUNAWAY = 1000  # polls after which a fake manager decides the loop will never end


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ticker(IoManager):
    """Wants poll() on every turn of the loop; each poll moves the fake clock on one second.

    ``on_poll`` decides what the poll does and returns whether it was work.
    """

    def __init__(
        self,
        clock: FakeClock,
        name: str = "ticker",
        *,
        on_poll: Callable[[int], bool] = lambda n: False,
        busy: Callable[[int], bool] = lambda n: False,
        events: list[str] | None = None,
    ) -> None:
        self.clock = clock
        self.name = name
        self.on_poll = on_poll
        self._busy = busy
        self.polls = 0
        self.events = events if events is not None else []

    def start(self) -> None:
        self.events.append(f"start {self.name}")

    def timeout(self) -> float:
        return 0.0

    def poll(self) -> bool:
        self.polls += 1
        if self.polls > RUNAWAY:
            raise AssertionError("the loop did not end")
        self.clock.now += 1
        return self.on_poll(self.polls)

    def busy(self) -> bool:
        return self._busy(self.polls)

    def stop(self) -> None:
        self.events.append(f"stop {self.name}")


class OverLimit(SoftMemoryLimit):
    def __init__(self, over: bool) -> None:
        super().__init__(100 * MB)
        self.over = over

    def exceeded(self) -> int | None:
        return 150 * MB if self.over else None


def stop_at(master: IoMaster, poll: int) -> Callable[[int], bool]:
    """An on_poll that asks the master to stop on the given poll (and never reports work)."""

    def on_poll(n: int) -> bool:
        if n == poll:
            master.request_stop()
        return False

    return on_poll


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    os.close(read_fd)
    os.close(write_fd)


def test_idle_exit_after_the_last_work(clock: FakeClock) -> None:
    # Given a manager that works on its first three polls, then finds nothing
    ticker = Ticker(clock, on_poll=lambda n: n <= 3)
    master = IoMaster([ticker], idle_exit=5, clock=clock)

    # When the loop runs
    code = master.run()

    # Then it exits 0 once five idle seconds have passed since the third poll
    assert code == 0
    assert ticker.polls == 3 + 5


def test_idle_exit_waits_while_a_manager_is_busy(clock: FakeClock) -> None:
    ticker = Ticker(clock, busy=lambda n: n < 20)
    master = IoMaster([ticker], idle_exit=5, clock=clock)

    assert master.run() == 0
    assert ticker.polls == 20


def test_no_idle_exit_by_default(clock: FakeClock) -> None:
    master = IoMaster([], clock=clock)
    ticker = Ticker(clock, on_poll=stop_at(master, 50))
    master.managers.append(ticker)

    assert master.run() == 0
    assert ticker.polls == 50


def test_request_stop_ends_the_loop_and_stops_every_manager(clock: FakeClock) -> None:
    # Given two managers, the first of which asks to stop on its third poll
    events: list[str] = []
    master = IoMaster([], clock=clock)

    def stop_on_third(n: int) -> bool:
        if n == 3:
            master.request_stop()
        return True

    first = Ticker(clock, "first", on_poll=stop_on_third, events=events)
    second = Ticker(clock, "second", events=events)
    master.managers.extend([first, second])

    # When the loop runs
    code = master.run()

    # Then it ends without polling anyone after the stop, and stops managers in reverse order
    assert code == 0
    assert (first.polls, second.polls) == (3, 2)
    assert events == ["start first", "start second", "stop second", "stop first"]


def test_stop_requested_before_run_polls_nothing(clock: FakeClock) -> None:
    ticker = Ticker(clock)
    master = IoMaster([ticker], clock=clock)
    master.request_stop()

    assert master.run() == 0
    assert ticker.polls == 0
    assert ticker.events == ["start ticker", "stop ticker"]


def test_every_started_manager_is_stopped_when_poll_raises(clock: FakeClock) -> None:
    events: list[str] = []

    def explode(n: int) -> bool:
        raise RuntimeError("poll broke")

    master = IoMaster(
        [Ticker(clock, "a", events=events), Ticker(clock, "b", on_poll=explode, events=events)], clock=clock
    )

    with pytest.raises(RuntimeError, match="poll broke"):
        master.run()

    assert events == ["start a", "start b", "stop b", "stop a"]


def test_a_failing_stop_does_not_prevent_the_others(clock: FakeClock) -> None:
    events: list[str] = []

    class BadStop(Ticker):
        def stop(self) -> None:
            raise RuntimeError("stop broke")

    master = IoMaster(
        [Ticker(clock, "a", events=events), BadStop(clock, "bad", events=events)], idle_exit=0, clock=clock
    )

    assert master.run() == 0
    assert events == ["start a", "start bad", "stop a"]


def test_a_manager_failing_to_start_stops_only_those_started(clock: FakeClock) -> None:
    events: list[str] = []

    class BadStart(Ticker):
        def start(self) -> None:
            raise RuntimeError("start broke")

    master = IoMaster(
        [
            Ticker(clock, "a", events=events),
            BadStart(clock, "bad", events=events),
            Ticker(clock, "c", events=events),
        ],
        clock=clock,
    )

    with pytest.raises(RuntimeError, match="start broke"):
        master.run()

    assert events == ["start a", "stop a"]


def test_over_the_soft_memory_limit_exits_to_be_replaced(clock: FakeClock) -> None:
    ticker = Ticker(clock)
    master = IoMaster([ticker], memory_limit=OverLimit(over=True), clock=clock)

    assert master.run() == EXIT_RESTART
    assert ticker.polls == 1  # checked after every turn
    assert ticker.events[-1] == "stop ticker"


def test_under_the_soft_memory_limit_keeps_running(clock: FakeClock) -> None:
    ticker = Ticker(clock)
    master = IoMaster([ticker], memory_limit=OverLimit(over=False), idle_exit=10, clock=clock)

    assert master.run() == 0
    assert ticker.polls == 10


def test_a_readable_fd_gets_its_manager_polled(clock: FakeClock, pipe: tuple[int, int]) -> None:
    # Given a manager that only wants polling when its pipe is readable, and data in the pipe
    read_fd, write_fd = pipe
    got: list[bytes] = []

    class PipeManager(IoManager):
        name = "pipe"

        def filenos(self) -> list[int]:
            return [read_fd]

        def timeout(self) -> float:
            return math.inf

        def poll(self) -> bool:
            got.append(os.read(read_fd, 64))
            return True

    master = IoMaster([], clock=clock)
    watchdog = Ticker(clock, on_poll=stop_at(master, 5))
    master.managers.extend([PipeManager(), watchdog])
    os.write(write_fd, b"frame")

    # When the loop runs a few turns
    master.run()

    # Then the pipe's manager was polled once: when it was readable, not on every turn
    assert got == [b"frame"]


def test_first_stop_signal_stops_the_second_forces(clock: FakeClock) -> None:
    master = IoMaster([], clock=clock)

    master._on_stop_signal(signal.SIGTERM, None)
    assert master.stopping

    with pytest.raises(ForcedShutdown, match="SIGINT"):
        master._on_stop_signal(signal.SIGINT, None)
    assert master.run() == 0  # closes the wake-up pipe


def test_request_stop_with_a_full_wake_pipe_is_harmless(clock: FakeClock) -> None:
    master = IoMaster([], clock=clock)

    for _ in range(70_000):  # more bytes than a Linux pipe holds (64 KiB)
        master.request_stop()

    assert master.run() == 0
