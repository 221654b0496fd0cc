"""statusq.wakeup: one byte per wake-up until drained, and never a byte after close."""

from __future__ import annotations

import os
import select

import pytest

from statusq.wakeup import WakePipe


def readable(pipe: WakePipe) -> bool:
    return bool(select.select([pipe.fileno()], [], [], 0)[0])


def test_wakes_coalesce_until_drained() -> None:
    pipe = WakePipe()
    try:
        assert not readable(pipe)
        pipe.wake()
        pipe.wake()
        assert readable(pipe)
        assert os.read(pipe.fileno(), 16) == b"x", "one byte for two wake-ups"
        pipe.wake()
        assert not readable(pipe), "still pending: not drained"
        pipe.drain()
        pipe.wake()
        assert readable(pipe)
    finally:
        pipe.close()


def test_a_wake_after_close_writes_into_no_reused_descriptor() -> None:
    # Given a closed pipe, and a new pipe that got its numbers (the lowest free ones)
    pipe = WakePipe()
    old = (pipe.fileno(), pipe._write)
    pipe.close()
    read_end, write_end = os.pipe()
    try:
        assert (read_end, write_end) == old, "the process reused the closed numbers"
        # When a late event wakes the closed pipe
        pipe.drain()
        pipe.wake()
        # Then nothing reached the new pipe that now has the old numbers
        assert not select.select([read_end], [], [], 0)[0]
    finally:
        os.close(read_end)
        os.close(write_end)


def test_close_is_idempotent_and_reentrant() -> None:
    pipe = WakePipe()
    with pipe._lock:  # a signal handler waking the loop of the thread that is closing it
        pipe.wake()
        pipe.close()
    pipe.close()
    pipe.wake()


def test_a_wake_during_the_drain_is_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a pending wake-up, and another thread's wake-up arriving while the loop drains
    pipe = WakePipe()
    real_read = os.read
    calls: list[int] = []

    def read_with_a_wake(fd: int, n: int) -> bytes:
        if not calls:
            calls.append(fd)
            pipe.wake()  # the other thread, between the loop's drain and its look at the events
        return real_read(fd, n)

    try:
        pipe.wake()
        monkeypatch.setattr("statusq.wakeup.os.read", read_with_a_wake)
        pipe.drain()
        monkeypatch.undo()
        # When the next event wakes the pipe, the loop sees it
        pipe.wake()
        assert readable(pipe), "a wake-up after the drain must write a byte"
    finally:
        pipe.close()
