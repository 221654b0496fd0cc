"""The renewing thread (statusq.ticker): a step that fails, by a store error or a bug, neither
stops the thread nor keeps the next step from running: a dead renewer lets leases run out."""

from __future__ import annotations

import threading

from statusq.errors import QueueError
from statusq.ticker import Ticker


def test_a_failing_step_never_ends_the_thread_nor_skips_the_next() -> None:
    calls: list[str] = []
    done = threading.Event()

    def store_down() -> None:
        calls.append("store")
        raise QueueError("database is locked")

    def bug() -> None:
        calls.append("bug")
        raise ZeroDivisionError

    def renew() -> None:
        calls.append("renew")
        if calls.count("renew") == 3:
            done.set()

    ticker = Ticker("test-ticker", 0.01, store_down, bug, renew)
    ticker.start()
    try:
        assert done.wait(timeout=30)
    finally:
        ticker.stop()
        ticker.join(timeout=30)
    assert calls[:3] == ["store", "bug", "renew"] and calls.count("renew") >= 3
    assert not ticker.is_alive()
