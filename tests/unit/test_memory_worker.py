"""A whole worker loop in-process: build_worker's IoMaster, QueueListener, ItemProcessor and
ControlManager over a MemoryQueueManager shared with a producer, all on one fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config
from statusq.control import ControlActions
from statusq.io.manager import IoManager
from statusq.io.master import IoMaster
from statusq.queues.base import BacklogRow, QueueManager
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.runtime import Runtime
from statusq.worker import build_worker
from tests.unit.fakes import FakeClock, write_plugin

STEP = 1.0  # fake seconds per turn of the loop
RUNAWAY = 1000  # turns after which the loop is taken to never end
MAX_RETRIES = 2
RETRY_DELAY = 10.0

SCRIPTED_PLUGIN = """
    from statusq import QueueHandler

    class Scripted(QueueHandler):
        '''Fails when the payload says so; ``on_handle(item)`` lets a test act inside an item.'''

        def __init__(self):
            self.on_handle = lambda item: None

        def handle(self, item):
            self.on_handle(item)
            if item.payload.get("fail"):
                raise ValueError("always fails")
            return True

    def register(api):
        api.register_handler("scripted", Scripted)
    """


class MemoryRuntime(Runtime):
    """A runtime whose queue managers all share one broker, so a test produces into the worker's."""

    def __init__(self, config: Config, broker: MemoryBroker) -> None:
        super().__init__(config)
        self.broker = broker

    def queue_manager(self) -> QueueManager:
        return MemoryQueueManager(self.config, self.broker)


class Clockwork(IoManager):
    """Wants poll() on every turn: moves the fake clock on one STEP and wakes the consumers (a
    retry may be due now), then lets the test act with ``on_turn``.  Never counts as work."""

    name = "clockwork"

    def __init__(self, clock: FakeClock, broker: MemoryBroker) -> None:
        self.clock = clock
        self.broker = broker
        self.on_turn: Callable[[], None] = lambda: None
        self.turns = 0

    def timeout(self) -> float:
        return 0.0

    def poll(self) -> bool:
        self.turns += 1
        if self.turns > RUNAWAY:
            raise AssertionError("the loop did not end")
        self.clock.advance(STEP)
        self.broker.wake()
        self.on_turn()
        return False


@dataclass
class World:
    runtime: MemoryRuntime
    clock: FakeClock
    producer: MemoryQueueManager
    events: list[str] = field(default_factory=list)

    @property
    def handler(self) -> Any:
        return self.runtime.registry.handler("scripted")

    def worker(self, *, idle_exit: float | None = None) -> tuple[IoMaster, Clockwork]:
        """The loop build_worker assembles, on the fake clock, with recording control actions."""
        clockwork = Clockwork(self.clock, self.runtime.broker)
        parts = build_worker(self.runtime, idle_exit=idle_exit, extra_managers=[clockwork], actions=self._actions)
        parts.master.clock = self.clock
        return parts.master, clockwork

    def _actions(self, runtime: Runtime, master: IoMaster) -> ControlActions:
        def record(name: str, then: Callable[[], None] = lambda: None) -> Callable[[], None]:
            return lambda: (self.events.append(name), then())[1]

        return ControlActions(
            reload=record("reload"), restart=record("restart"), shutdown=record("shutdown", master.request_stop)
        )

    def record_items(self) -> None:
        """Each item the handler sees, as ``id@attempt t=<fake seconds since the start>``."""
        start = self.clock.now
        self.handler.on_handle = lambda item: self.events.append(
            f"{item.id}@{item.attempt} t={self.clock.now - start:g}"
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    write_plugin(tmp_path / "plugins", "scripted", SCRIPTED_PLUGIN)
    config = Config.model_validate(
        {
            "var_dir": str(tmp_path / "var"),
            "queue": {
                "subsystem": "memory",
                "max_retries": MAX_RETRIES,
                "retry_delay": RETRY_DELAY,
                "retry_delay_max": "1h",
                "poll_max": "20ms",
            },
            "plugins": {"paths": [str(tmp_path / "plugins")]},
            "sites": {"dir": str(tmp_path / "sites")},
            "metrics": {"enabled": False},
        }
    )
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    with MemoryQueueManager(config, broker) as producer:
        yield World(MemoryRuntime(config, broker), clock, producer)


def waiting(queue: MemoryQueueManager) -> list[BacklogRow]:
    return [row for row in queue.backlog() if row.ready or row.delayed or row.in_flight]


def test_items_are_handled_in_order_and_acked(world: World) -> None:
    # Given three items queued before the worker starts
    ids = [world.producer.enqueue({"n": n}, "scripted") for n in range(3)]
    world.record_items()
    master, clockwork = world.worker()
    clockwork.on_turn = lambda: None if waiting(world.producer) else master.request_stop()

    # When the worker runs until the queue is empty
    assert master.run() == 0

    # Then each was handled once, on its first attempt, and is gone
    assert [event.split(" ")[0] for event in world.events] == [f"{i}@1" for i in ids]
    assert world.producer.broker.acked == 3
    assert world.producer.backlog() == []


def test_a_failing_item_backs_off_on_the_clock_then_is_dead_lettered(world: World) -> None:
    # Given an item whose handler always fails (max_retries=2: three attempts, 10s then 20s apart)
    item_id = world.producer.enqueue({"fail": True}, "scripted")
    times: list[float] = []
    world.handler.on_handle = lambda item: times.append(world.clock.now)
    master, clockwork = world.worker()
    clockwork.on_turn = lambda: None if waiting(world.producer) else master.request_stop()

    # When the worker runs until nothing is left waiting
    assert master.run() == 0

    # Then it ran three times, each retry only once its backoff (x0.8-1.0 jitter) had passed
    first, second, third = times
    assert 0.8 * RETRY_DELAY <= second - first <= RETRY_DELAY + STEP
    assert 0.8 * 2 * RETRY_DELAY <= third - second <= 2 * RETRY_DELAY + STEP
    # And it is dead with the reason
    [letter] = world.producer.dead_letters()
    assert (letter.id, letter.attempts) == (item_id, MAX_RETRIES + 1)
    assert letter.error == "ValueError: always fails (gave up after 3 attempts)"
    assert letter.dead_at == third


def send_during(world: World, item_id: str, command: str) -> None:
    """Record every item; while ``item_id`` is handled, broadcast the control ``command``."""
    world.record_items()
    recorded = world.handler.on_handle

    def sends_command(item: Any) -> None:
        recorded(item)
        if item.id == item_id:
            world.producer.send_control(command)

    world.handler.on_handle = sends_command


def test_shutdown_sent_during_an_item_stops_before_the_next(world: World) -> None:
    # Given three items; while the first is handled, a shutdown is broadcast
    ids = [world.producer.enqueue({}, "scripted") for _ in range(3)]
    send_during(world, ids[0], "shutdown")
    master, _ = world.worker()

    # When the worker runs
    assert master.run() == 0

    # Then the shutdown was applied right after the first item; the others wait for another worker
    assert [event.split(" ")[0] for event in world.events] == [f"{ids[0]}@1", "shutdown"]
    assert world.producer.backlog() == [BacklogRow("default", "scripted", ready=2)]


def test_reload_sent_during_an_item_is_applied_before_the_next(world: World) -> None:
    ids = [world.producer.enqueue({}, "scripted") for _ in range(3)]
    send_during(world, ids[0], "reload")
    master, clockwork = world.worker()
    clockwork.on_turn = lambda: None if waiting(world.producer) else master.request_stop()

    assert master.run() == 0

    assert [event.split(" ")[0] for event in world.events] == [f"{ids[0]}@1", "reload", f"{ids[1]}@1", f"{ids[2]}@1"]


def test_idle_exit_waits_for_idle_time_after_the_last_item(world: World) -> None:
    # Given --idle-exit 5 and an item that arrives on the loop's third turn
    world.producer.enqueue({}, "scripted")
    world.record_items()
    master, clockwork = world.worker(idle_exit=5)
    start = world.clock.now

    def third_turn_enqueues() -> None:
        if clockwork.turns == 3:
            world.producer.enqueue({}, "scripted")

    clockwork.on_turn = third_turn_enqueues

    # When the loop runs on its own
    assert master.run() == 0

    # Then both items were handled, the second at t=3, and it exited 5s after that, not before
    assert [event.split(" ", 1)[1] for event in world.events] == ["t=0", "t=3"]
    assert 3 + 5 <= world.clock.now - start <= 3 + 5 + STEP
    assert world.producer.backlog() == []


def test_idle_exit_does_not_wait_for_a_delayed_retry(world: World) -> None:
    # A retry due in 10s is not work in hand: --idle-exit 3 leaves it queued for a later worker
    world.producer.enqueue({"fail": True}, "scripted")
    master, _ = world.worker(idle_exit=3)

    assert master.run() == 0

    assert world.producer.backlog() == [BacklogRow("default", "scripted", delayed=1)]
