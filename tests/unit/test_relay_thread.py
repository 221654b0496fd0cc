"""A relay's thread (statusq.io.relaythread): it looks as told, survives a look that raises, tells
the loop when it moved items, and stops with the loop."""

from __future__ import annotations

import threading

from statusq.io.relaythread import RelayThread


class Counting(RelayThread):
    name = "counting"

    def __init__(self, waits: list[float | None], fail_at: int = 0) -> None:
        super().__init__("counting", join_timeout=5.0)
        self.waits = waits
        self.fail_at = fail_at
        self.looks = 0
        self.done = threading.Event()

    def look(self) -> float | None:
        self.looks += 1
        wait = self.waits.pop(0)
        if self.looks == self.fail_at:
            raise RuntimeError("a look that fails")  # logged; the thread goes on
        self.moved(1)
        if wait is None:
            self.done.set()
        return wait


def test_the_thread_looks_until_told_never_again_and_survives_a_failed_look() -> None:
    relay = Counting([0.0, 0.0, 0.0, None], fail_at=2)
    assert relay.poll() is False
    relay.start()
    for _ in range(100):  # after the failed look it waits its longest: woken here, not waited for
        if relay.done.wait(0.1):
            break
        relay.wake()
    assert relay.done.is_set(), "the thread stopped looking"
    assert relay.looks == 4
    assert relay.poll() is True, "it moved items: the loop's idle clock starts again"
    assert relay.poll() is False, "told once"
    relay.stop()
    assert not relay._thread.is_alive()


def test_a_wake_cuts_a_long_wait_short_and_stop_ends_the_thread() -> None:
    relay = Counting([3600.0, None])
    relay.start()
    relay.wake()
    assert relay.done.wait(10), "the wake did not end the hour's wait"
    relay2 = Counting([3600.0])
    relay2.start()
    relay2.stop()
    assert not relay2._thread.is_alive()


def test_a_stopping_process_relays_nothing_more() -> None:
    relay = Counting([0.0, 0.0, None])
    relay.stopping = lambda: True
    relay.start()
    relay._thread.join(timeout=10)
    assert not relay._thread.is_alive() and relay.looks == 0
