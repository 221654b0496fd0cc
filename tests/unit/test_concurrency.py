"""Several items in hand in one worker (``[daemon] concurrency``): build_worker's loop over the
memory backend, with handlers on a thread pool and on an event loop.

Handlers block on barriers and events the test holds, so "N at once" is observed, never timed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config
from statusq.defaults import EXIT_RESTART
from statusq.io.concurrent import ConcurrentListener
from statusq.io.listener import QueueListener
from statusq.io.manager import IoManager
from statusq.io.master import IoMaster
from statusq.queues.base import QueueManager
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.runtime import Runtime
from statusq.worker import build_worker
from tests.unit.fakes import handler_plugin, write_plugin

WAIT = 10.0  # longest any barrier or event is waited for: a bound, never the measure

PLUGIN = """
    from statusq import QueueHandler

    class Blocking(QueueHandler):
        '''Calls the test's hook, which may block; records each call.'''
        hook = None

        def handle(self, item):
            return type(self).hook(item)

    class Other(Blocking):
        hook = None

    class Awaiting(QueueHandler):
        hook = None

        async def handle(self, item):
            return await type(self).hook(item)

    def register(api):
        api.register_handler("sync", Blocking)
        api.register_handler("other", Other)
        api.register_handler("async", Awaiting)
    """


class MemoryRuntime(Runtime):
    def __init__(self, config: Config, broker: MemoryBroker) -> None:
        super().__init__(config)
        self.broker = broker

    def queue_manager(self) -> QueueManager:
        return MemoryQueueManager(self.config, self.broker)


class Until(IoManager):
    """Stops the loop once ``done()`` holds (looked at every 10 ms), or fails after WAIT * 3."""

    name = "until"

    def __init__(self, master_ref: list[IoMaster], done: Callable[[], bool]) -> None:
        self.master_ref = master_ref
        self.done = done
        self.deadline = time.monotonic() + 3 * WAIT
        self.due = 0.0

    def timeout(self) -> float:
        return self.due - time.monotonic()

    def poll(self) -> bool:
        self.due = time.monotonic() + 0.01
        if time.monotonic() > self.deadline:
            raise AssertionError("the loop did not end")
        if self.done():
            self.master_ref[0].request_stop()
        return False


@dataclass
class World:
    tmp_path: Path
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (transport, item id, site seen)

    def config(self, concurrency: int, **daemon: Any) -> Config:
        return Config.model_validate(
            {
                "var_dir": str(self.tmp_path / "var"),
                "queue": {"subsystem": "memory", "max_retries": 0, "poll_max": "20ms"},
                "daemon": {"concurrency": concurrency, **daemon},
                "plugins": {"paths": [str(self.tmp_path / "plugins")]},
                "sites": {"dir": str(self.tmp_path / "sites")},
                "metrics": {"enabled": False},
                **self.extra,
            }
        )

    extra: dict[str, Any] = field(default_factory=dict)

    def enqueue(self, transport: str, n: int, site: str = "default") -> list[str]:
        with MemoryQueueManager(self.config(1), self.broker) as producer:
            return [producer.enqueue({"n": i}, transport, site=site) for i in range(n)]

    def worker(
        self, concurrency: int, until: Callable[[], bool], middleware: list[Any] | None = None, **daemon: Any
    ) -> tuple[IoMaster, Runtime]:
        runtime = MemoryRuntime(self.config(concurrency, **daemon), self.broker)
        ref: list[IoMaster] = []
        parts = build_worker(runtime, extra_managers=[Until(ref, until)], middleware=middleware)
        ref.append(parts.master)
        return parts.master, runtime

    def settled(self) -> int:
        return self.broker.acked + len(self.broker.dead)


def hook(runtime: Runtime, transport: str, fn: Any) -> None:
    handler = runtime.registry.handler(transport)
    assert handler is not None
    type(handler).hook = staticmethod(fn)  # type: ignore[attr-defined]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    write_plugin(tmp_path / "plugins", "blocking", PLUGIN)
    yield World(tmp_path)


def listener_of(master: IoMaster) -> Any:
    return next(m for m in master.managers if isinstance(m, QueueListener))


def test_concurrency_1_keeps_the_one_thread_listener_unless_a_handler_is_async(tmp_path: Path) -> None:
    write_plugin(tmp_path / "plugins", "plain", handler_plugin("plain"))
    sync_only = World(tmp_path)
    master, _ = sync_only.worker(1, lambda: True)
    assert type(listener_of(master)) is QueueListener

    write_plugin(tmp_path / "plugins", "blocking", PLUGIN)
    master, _ = World(tmp_path).worker(1, lambda: True)
    assert type(listener_of(master)) is ConcurrentListener


def test_at_concurrency_1_a_sync_item_runs_on_the_loops_thread_beside_an_async_handler(world: World) -> None:
    # Given a worker with one item in hand whose plugin registers sync and async handlers (so the
    # concurrent listener), and an item of each
    world.enqueue("sync", 2)
    world.enqueue("async", 1)
    master, runtime = world.worker(1, lambda: world.settled() == 3)
    threads: list[str] = []

    def sync(item: Any) -> bool:
        threads.append(threading.current_thread().name)
        return True

    async def awaited(item: Any) -> bool:
        threads.append("async")
        return True

    hook(runtime, "sync", sync)
    hook(runtime, "async", awaited)

    # When it runs them
    assert master.run() == 0

    # Then the sync ones ran on the loop's own thread, as with no async handler (a pool thread's
    # hand-off cost a no-op item nearly half its rate), and the async one on the event loop
    assert isinstance(listener_of(master), ConcurrentListener)
    assert sorted(threads) == sorted(["async", threading.main_thread().name, threading.main_thread().name])
    assert world.broker.acked == 3 and world.broker.dead == {}


def test_n_sync_items_are_in_hand_at_once_each_handled_once(world: World) -> None:
    # Given 12 items and a worker with 4 in hand, whose handler waits until 4 are running together
    ids = world.enqueue("sync", 12)
    master, runtime = world.worker(4, lambda: world.settled() == 12)
    barrier = threading.Barrier(4, timeout=WAIT)
    seen: list[str] = []

    def blocks(item: Any) -> bool:
        seen.append(item.id)
        barrier.wait()  # breaks (and the item fails) unless 4 run at once
        return True

    hook(runtime, "sync", blocks)

    # When the worker runs until every item is settled
    assert master.run() == 0

    # Then each was handled once, four at a time, and acked
    assert isinstance(listener_of(master), ConcurrentListener)
    assert sorted(seen) == sorted(ids)
    assert world.broker.acked == 12 and world.broker.dead == {}


def test_async_handlers_run_n_at_once_on_one_event_loop(world: World) -> None:
    # Given 60 items for an async handler that waits until all 60 are running
    ids = world.enqueue("async", 60)
    master, runtime = world.worker(60, lambda: world.settled() == 60)
    started: list[str] = []
    threads: set[int] = set()
    all_in: list[asyncio.Event] = []

    async def waits(item: Any) -> bool:
        if not all_in:
            all_in.append(asyncio.Event())
        started.append(item.id)
        threads.add(threading.get_ident())
        if len(started) == 60:
            all_in[0].set()
        await asyncio.wait_for(all_in[0].wait(), WAIT)
        return True

    hook(runtime, "async", waits)

    assert master.run() == 0

    # Then all 60 were in hand together, on one thread (the loop's), each handled once
    assert sorted(started) == sorted(ids)
    assert len(threads) == 1 and threading.get_ident() not in threads
    assert world.broker.acked == 60 and world.broker.dead == {}


def test_sync_and_async_handlers_in_one_worker_and_outcomes_alike(world: World) -> None:
    # Given items for a sync and an async handler; some return False, some raise (max_retries 0)
    world.enqueue("sync", 6)
    world.enqueue("async", 6)
    master, runtime = world.worker(4, lambda: world.settled() == 12)

    def sync(item: Any) -> bool | None:
        if item.payload["n"] == 1:
            return False
        if item.payload["n"] == 2:
            raise ValueError("sync boom")
        return None

    async def aio(item: Any) -> bool | None:
        await asyncio.sleep(0)
        if item.payload["n"] == 1:
            return False
        if item.payload["n"] == 2:
            raise ValueError("async boom")
        return True

    hook(runtime, "sync", sync)
    hook(runtime, "async", aio)

    assert master.run() == 0

    # Then True/None are done, False and exceptions dead-lettered (no retries left) with the reason
    assert world.broker.acked == 8
    reasons = sorted(item.last_error or "" for item in world.broker.dead.values())
    assert reasons == [
        "ValueError: async boom (gave up after 1 attempts)",
        "ValueError: sync boom (gave up after 1 attempts)",
        "handler returned False (gave up after 1 attempts)",
        "handler returned False (gave up after 1 attempts)",
    ]


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_current_site_is_each_items_own_with_two_sites_interleaved(world: World, transport: str) -> None:
    # Given items of two sites, alternating, and 6 in hand at once
    for site in ("a.example", "b.example", "a.example", "b.example", "a.example", "b.example"):
        world.enqueue(transport, 2, site=site)
    master, runtime = world.worker(6, lambda: world.settled() == 12)
    mismatches: list[str] = []
    from statusq import current_site

    if transport == "sync":
        barrier = threading.Barrier(6, timeout=WAIT)

        def check(item: Any) -> bool:
            barrier.wait()  # every thread has set its site before any reads it back
            if current_site().name != item.site:
                mismatches.append(f"{item.id}: {current_site().name} != {item.site}")
            return True

        hook(runtime, "sync", check)
    else:
        count = [0]

        async def acheck(item: Any) -> bool:
            count[0] += 1
            everyone = (count[0] + 5) // 6 * 6  # the six of this item's round have all started
            while count[0] < everyone:
                await asyncio.sleep(0.001)
            if current_site().name != item.site:
                mismatches.append(f"{item.id}: {current_site().name} != {item.site}")
            return True

        hook(runtime, "async", acheck)

    assert master.run() == 0

    assert mismatches == []
    assert world.broker.acked == 12


def test_a_transports_cap_holds_its_items_below_the_workers_concurrency(world: World) -> None:
    # Given [transports.sync] concurrency = 1 in a worker of 4, and another transport beside it
    world.extra = {"transports": {"sync": {"concurrency": 1}}}
    world.enqueue("sync", 5)
    world.enqueue("other", 3)
    master, runtime = world.worker(4, lambda: world.settled() == 8)
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    lock = threading.Lock()
    others_in = threading.Barrier(3, timeout=WAIT)

    def counted(name: str) -> Callable[[Any], bool]:
        def run(item: Any) -> bool:
            with lock:
                running[name] += 1
                most[name] = max(most[name], running[name])
            if name == "other":
                others_in.wait()  # the three "other" items run together beside one "sync"
            else:
                time.sleep(0.01)
            with lock:
                running[name] -= 1
            return True

        return run

    hook(runtime, "sync", counted("sync"))
    hook(runtime, "other", counted("other"))

    assert master.run() == 0
    assert most["sync"] == 1 and most["other"] == 3
    assert world.broker.acked == 8


def test_stop_finishes_every_item_in_hand_before_the_loop_ends(world: World) -> None:
    # Given 12 items and a worker with 8 in hand, all blocked when a stop is requested
    world.enqueue("sync", 12)
    master, runtime = world.worker(8, lambda: False)
    all_in = threading.Barrier(9, timeout=WAIT)  # 8 handlers and the test's thread
    release = threading.Event()

    def blocks(item: Any) -> bool:
        all_in.wait()
        return release.wait(WAIT)

    hook(runtime, "sync", blocks)

    def stop_then_release() -> None:
        all_in.wait()
        master.request_stop()
        time.sleep(0.05)  # the loop is draining now, fetching no more; then the handlers finish
        release.set()

    threading.Thread(target=stop_then_release, daemon=True).start()

    # When the loop ends
    assert master.run() == 0

    # Then the 8 in hand were finished and acked; the 4 never taken wait for another worker
    assert world.broker.acked == 8 and world.broker.dead == {}
    assert len(world.broker.items) == 4
    assert all(item.claimed_by is None for item in world.broker.items.values())


def test_a_thread_past_its_time_limit_is_interrupted_and_the_others_go_on(world: World) -> None:
    # Given a handler that spins in Python past a 0.2 s limit, beside ordinary items
    world.enqueue("sync", 1)
    world.enqueue("other", 6)
    master, runtime = world.worker(4, lambda: world.settled() == 7, time_limit="200ms", time_limit_grace="2s")

    def spins(item: Any) -> bool:
        while True:
            sum(range(100))

    hook(runtime, "sync", spins)
    hook(runtime, "other", lambda item: True)

    assert master.run() == 0

    [dead] = world.broker.dead.values()
    assert dead.transport == "sync"
    assert "ran past the time limit" in (dead.last_error or "")
    assert world.broker.acked == 6
    assert listener_of(master).abandoned == 0


def test_a_thread_stuck_in_c_is_abandoned_its_item_failed_and_the_others_go_on(world: World) -> None:
    # Given a handler blocked in C (a lock wait no exception can interrupt) past its limit
    world.enqueue("sync", 1)
    world.enqueue("other", 6)
    master, runtime = world.worker(8, lambda: world.settled() == 7, time_limit="200ms", time_limit_grace="400ms")
    stuck = threading.Event()
    hook(runtime, "sync", lambda item: stuck.wait(WAIT * 3))
    hook(runtime, "other", lambda item: True)

    try:
        assert master.run() == 0
    finally:
        stuck.set()

    # Then its item was settled as a time-limit failure without it, the thread abandoned
    [dead] = world.broker.dead.values()
    assert dead.transport == "sync" and "did not stop" in (dead.last_error or "")
    assert world.broker.acked == 6
    assert listener_of(master).abandoned == 1


def test_too_many_abandoned_threads_ask_for_a_restart_after_the_others_finish(world: World) -> None:
    # Given concurrency 4 (a restart after 1 abandoned handler) and a stuck one beside others
    world.enqueue("sync", 1)
    world.enqueue("other", 3)
    master, runtime = world.worker(4, lambda: False, time_limit="200ms", time_limit_grace="400ms")
    stuck = threading.Event()
    hook(runtime, "sync", lambda item: stuck.wait(WAIT * 3))
    hook(runtime, "other", lambda item: True)

    try:
        code = master.run()
    finally:
        stuck.set()

    # Then the worker exits to be replaced, having settled everything it had taken
    assert code == EXIT_RESTART
    assert len(world.broker.dead) == 1 and world.broker.acked == 3


def test_an_async_handler_past_its_time_limit_is_cancelled(world: World) -> None:
    world.enqueue("async", 1)
    world.enqueue("other", 3)
    master, runtime = world.worker(4, lambda: world.settled() == 4, time_limit="200ms", time_limit_grace="2s")

    async def sleeps(item: Any) -> bool:
        await asyncio.sleep(WAIT * 3)
        return True

    hook(runtime, "async", sleeps)
    hook(runtime, "other", lambda item: True)

    assert master.run() == 0
    [dead] = world.broker.dead.values()
    assert dead.transport == "async" and "(cancelled)" in (dead.last_error or "")
    assert world.broker.acked == 3


class OverLimit:
    """A soft memory limit the test switches on."""

    def __init__(self) -> None:
        self.over = False
        self.bytes = 1 << 20

    def exceeded(self) -> int | None:
        return 2 << 20 if self.over else None


def test_the_memory_limit_restarts_the_worker_only_after_its_items_finish(world: World) -> None:
    # Given 4 items in hand, blocked, when the worker goes over its soft memory limit
    world.enqueue("sync", 6)
    master, runtime = world.worker(4, lambda: False)
    limit = OverLimit()
    master.memory_limit = limit  # type: ignore[assignment]
    all_in = threading.Barrier(5, timeout=WAIT)
    release = threading.Event()

    def blocks(item: Any) -> bool:
        if item.payload["n"] < 4:
            all_in.wait()
        return release.wait(WAIT)

    hook(runtime, "sync", blocks)

    def leak_then_release() -> None:
        all_in.wait()
        limit.over = True
        time.sleep(0.2)  # the loop saw it (it looks every 50 ms) and is draining
        release.set()

    threading.Thread(target=leak_then_release, daemon=True).start()

    # Then it exits to be replaced, having finished and acked the 4, taking nothing else
    assert master.run() == EXIT_RESTART
    assert world.broker.acked == 4 and len(world.broker.items) == 2


@pytest.mark.parametrize("transport", ["sync", "async"])
def test_what_middleware_sets_per_item_is_that_items_in_its_handler_and_nowhere_else(
    world: World, transport: str
) -> None:
    # Given the log-fields middleware, and 6 items of two sites in hand at once
    from statusq.logs import ItemLogContext, current_item

    for site in SITES_INTERLEAVED:
        world.enqueue(transport, 1, site=site)
    master, runtime = world.worker(6, lambda: world.settled() == 6, middleware=[ItemLogContext()])
    wrong: list[str] = []

    def check(item: Any) -> bool:
        fields = current_item.get()
        if fields is None or fields["id"] != item.id:
            wrong.append(f"{item.id}: {fields}")
        return True

    async def acheck(item: Any) -> bool:
        await asyncio.sleep(0.001)  # the others start meanwhile
        return check(item)

    hook(runtime, transport, check if transport == "sync" else acheck)

    assert master.run() == 0

    # Then each handler saw its own item's fields, and the loop's thread kept none
    assert wrong == [] and world.broker.acked == 6
    assert current_item.get() is None


SITES_INTERLEAVED = ("a.example", "b.example") * 3
