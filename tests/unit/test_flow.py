"""Rate limits and concurrency caps (statusq.flow) on a fake clock, over a SQLite store file:
the GCRA's counts per window, the burst, the place in line a held item gets, slots that are
leases (taken, given back, expired, renewed); and in the processor over the in-memory broker:
a held item is not run, not counted, and runs once its turn comes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq import defaults
from statusq.config import Config, SiteConfig
from statusq.errors import QueueError
from statusq.flow import FlowGate, Rate
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.outcome import Held, Outcome
from statusq.processor import ItemProcessor
from statusq.produce import RATE_KEY_HEADER
from statusq.queues.base import Subscription
from statusq.queues.db.flow import FlowStore
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import FakeClock


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FlowStore]:
    opened = FlowStore.open(f"sqlite:///{tmp_path / 'flow.sqlite'}")
    yield opened
    opened.close()


def gcra_run(store: FlowStore, clock: FakeClock, rate: Rate, seconds: float, step: float) -> list[float]:
    """Ask every ``step`` for ``seconds``; the times let through."""
    allowed: list[float] = []
    n = 0
    while n * step < seconds:
        answer = store.take(
            "t:push",
            now=clock(),
            interval=rate.interval,
            tolerance=rate.tolerance,
            horizon=10.0,
            token=f"{n:032d}",
        )
        if answer.allowed:
            allowed.append(clock())
        clock.advance(step)
        n += 1
    return allowed


def most_in_a_window(times: list[float], window: float = 1.0) -> int:
    return max(sum(1 for u in times if t <= u <= t + window) for t in times)


@pytest.mark.parametrize("burst", [1, 5])
def test_gcra_lets_through_the_rate_plus_the_burst_and_no_more(store: FlowStore, burst: int) -> None:
    # Given 10/s, asked every 7 ms for 5 simulated seconds
    clock = FakeClock()
    rate = Rate.parse("10/s", burst)
    assert rate is not None
    allowed = gcra_run(store, clock, rate, 5.0, 0.007)

    # Then no 1-second window holds more than limit + burst, and the rate is reached
    assert most_in_a_window(allowed) <= 10 + burst
    assert len(allowed) >= 0.9 * 5 * 10  # asked every 7 ms: a turn is missed by up to 7 ms
    # and a burst goes at once: the first `burst` asks are all let through
    assert allowed[burst - 1] - allowed[0] < 0.007 * burst


def test_a_burst_goes_at_once_then_the_pace_holds(store: FlowStore) -> None:
    clock = FakeClock()
    answers = [
        store.take("b", now=clock(), interval=0.1, tolerance=0.4, horizon=10.0, token=f"{i:032d}").allowed
        for i in range(7)
    ]
    assert answers == [True] * 5 + [False] * 2
    clock.advance(0.1)
    assert store.take("b", now=clock(), interval=0.1, tolerance=0.4, horizon=10.0, token="x" * 32).allowed


def test_held_items_get_places_in_line_an_interval_apart(store: FlowStore) -> None:
    # Given a 10/s bucket just used, and 20 items refused at the same instant
    clock = FakeClock()
    store.take("q", now=clock(), interval=0.1, tolerance=0.0, horizon=1.0, token="a" * 32)
    waits = [
        store.take("q", now=clock(), interval=0.1, tolerance=0.0, horizon=1.0, token=f"{i:032d}") for i in range(20)
    ]

    # Then each reserved the next place (wait_tat an interval further), up to the horizon of 1 s
    # (the first item's interval counts from half an interval before it: see _START)
    assert not any(w.allowed for w in waits)
    places = [round(w.wait_tat - clock(), 3) for w in waits]
    assert places[:10] == [round(0.1 * (i + 1.5), 3) for i in range(10)]
    assert max(places) <= 1.0 + 0.1 + 1e-9  # past the horizon no more places are taken


def test_slots_are_leases_taken_given_back_expired_and_renewed(store: FlowStore) -> None:
    clock = FakeClock()

    def take(holder: str, lease: str) -> object:
        return store.acquire("push", 2, holder=holder, lease=lease, now=clock(), expires_at=clock() + 30)

    one, two = take("w1", "l1"), take("w2", "l2")
    assert one is not None and two is not None
    assert take("w3", "l3") is None  # both slots taken

    store.release(one)  # type: ignore[arg-type]
    three = take("w3", "l3")
    assert three is not None

    # w2 dies; w3 keeps renewing: after the lease, w2's slot is free and w3's is not
    clock.advance(20)
    assert store.renew("w3", clock() + 30) == 1
    clock.advance(15)
    assert take("w4", "l4") is not None  # w2's, expired
    assert take("w5", "l5") is None  # w3's, renewed


class Recorder(QueueHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def handle(self, item: QueueItem) -> bool:
        self.seen.append((item.id, item.attempt))
        return True

    def rate_key(self, item: QueueItem) -> str | None:
        return item.payload.get("host") or super().rate_key(item)


def make_config(tmp_path: Path, **transport: object) -> Config:
    return Config.model_validate(
        {
            "var_dir": str(tmp_path),
            "queue": {"subsystem": "memory", "max_retries": 0, "cap_hold": "1s", "rate_hold_max": "5s"},
            "transports": {"rec": transport},
        }
    )


def processor_for(config: Config, clock: FakeClock, store: FlowStore) -> tuple[ItemProcessor, Recorder, FlowGate]:
    registry = HandlerRegistry()
    registry.register("rec", Recorder, group="main", plugin="test")
    handler = registry.handler("rec")
    assert isinstance(handler, Recorder)
    gate = FlowGate(config, lambda: store, clock=clock, host="h1", uniform=lambda a, b: b)
    policy = RetryPolicy(max_retries=0, delay=1.0, delay_max=1.0)
    return ItemProcessor(registry, SiteTable(config), policy, flow=gate, clock=clock), handler, gate


def test_an_item_over_the_rate_waits_uncounted_and_runs_at_its_turn(tmp_path: Path, store: FlowStore) -> None:
    # Given 2/s on the transport, on the memory backend, with no retries (a counted hold would kill it)
    clock = FakeClock()
    config = make_config(tmp_path, rate_limit="2/s")
    processor, handler, _ = processor_for(config, clock, store)
    with MemoryQueueManager(config, MemoryBroker(clock=clock)) as qm:
        ids = [qm.enqueue({"n": n}, "rec", site="a.example") for n in range(3)]
        consumer = qm.subscribe(Subscription())

        # When three are fetched at once: one runs, two are held by the transport's rate
        results = [processor.process(d, consumer) for d in iter(consumer.fetch, None)]
        assert [r.outcome for r in results] == [Outcome.DONE, Outcome.HOLD, Outcome.HOLD]
        held = results[1]
        assert isinstance(held, Held) and held.limit == "transport_rate"
        assert "rate limit of transport rec (2/s)" in (held.reason or "")

        # Then they come back at their places in line, half a second apart, and run as attempt 1:
        # three items in one second, the limit's pace (the first one's interval counts from a
        # quarter second before it, half an interval: _START in statusq/queues/db/flow.py)
        delays = [r.delay for r in results[1:]]
        assert delays == pytest.approx([0.5, 1.0])
        clock.advance(0.5)
        first = consumer.fetch()
        assert first is not None and processor.process(first, consumer).outcome is Outcome.DONE
        clock.advance(0.5)
        second = consumer.fetch()
        assert second is not None and processor.process(second, consumer).outcome is Outcome.DONE
        assert sorted(handler.seen) == sorted((i, 1) for i in ids)
        assert qm.dead_letters() == [] and qm.backlog() == []
        consumer.close()


@pytest.mark.parametrize("limit", ["2/s", "5/s", "10/s"])
def test_held_items_that_come_back_late_still_keep_the_limits_pace(
    tmp_path: Path, store: FlowStore, limit: str
) -> None:
    # Given a backlog of items over a burst-1 rate, on the memory backend, and a worker that looks
    # for due items every 40 ms (each held item is seen up to 40 ms after the delay it was given:
    # a poll, a broker's hop)
    clock = FakeClock()
    config = make_config(tmp_path, rate_limit=limit)
    rate = Rate.parse(limit, 1)
    assert rate is not None
    processor, handler, _ = processor_for(config, clock, store)
    ran: list[float] = []
    with MemoryQueueManager(config, MemoryBroker(clock=clock)) as qm:
        ids = [qm.enqueue({"n": n}, "rec", site="a.example") for n in range(20)]
        consumer = qm.subscribe(Subscription())
        for _ in range(5_000):  # 200 simulated seconds at most
            if len(ran) == len(ids):
                break
            for delivery in iter(consumer.fetch, None):
                if processor.process(delivery, consumer).outcome is Outcome.DONE:
                    ran.append(clock())
            clock.advance(0.04)
        consumer.close()

    # Then all ran once, as attempt 1, never more than limit + burst in a second, and at 90% of
    # the limit or more (GCRA counting from each late arrival pushed every later turn back by the
    # lateness: 60-68% of the limit)
    assert sorted(handler.seen) == sorted((i, 1) for i in ids)
    assert most_in_a_window(ran) <= round(1 / rate.interval) + 1
    assert (len(ran) - 1) / (ran[-1] - ran[0]) >= 0.9 / rate.interval


def test_a_rate_key_limits_each_key_apart(tmp_path: Path, store: FlowStore) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, key_rate_limit="1/s")
    processor, _, _ = processor_for(config, clock, store)
    with MemoryQueueManager(config, MemoryBroker(clock=clock)) as qm:
        qm.enqueue({"host": "a"}, "rec", site="s.example")
        qm.enqueue({"host": "a"}, "rec", site="s.example")
        qm.enqueue({"host": "b"}, "rec", site="s.example")
        qm.enqueue({}, "rec", site="s.example", headers={RATE_KEY_HEADER: "c"})
        qm.enqueue({}, "rec", site="s.example")  # no key: not limited by key
        qm.enqueue({}, "rec", site="s.example", rate_key="d")  # the producer's own argument ...
        qm.enqueue({}, "rec", site="s.example", rate_key="d")  # ... the same bucket as the header's
        consumer = qm.subscribe(Subscription())
        results = [processor.process(d, consumer) for d in iter(consumer.fetch, None)]
        done, hold = Outcome.DONE, Outcome.HOLD
        assert [r.outcome for r in results] == [done, hold, done, done, done, done, hold]
        held = results[1]
        assert isinstance(held, Held) and held.limit == "key_rate"
        consumer.close()


def test_idle_rate_buckets_are_forgotten_now_and_then_and_change_no_answer(tmp_path: Path, store: FlowStore) -> None:
    # Given a key rate of 1/s and five keys each used once
    clock = FakeClock()
    config = make_config(tmp_path, key_rate_limit="1/s")
    processor, _, _ = processor_for(config, clock, store)

    def count() -> int:
        with store.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM statusq_rates").scalar_one())

    with MemoryQueueManager(config, MemoryBroker(clock=clock)) as qm:
        consumer = qm.subscribe(Subscription())

        def run(*keys: str) -> list[Outcome]:
            for key in keys:
                qm.enqueue({}, "rec", site="s.example", rate_key=key)
            return [processor.process(d, consumer).outcome for d in iter(consumer.fetch, None)]

        assert run("k0", "k1", "k2", "k3", "k4") == [Outcome.DONE] * 5
        assert count() == 5

        # When less than the prune period has gone by, nothing is forgotten (one DELETE per period)
        clock.advance(defaults.RATE_PRUNE_EVERY / 2)
        assert run("k5") == [Outcome.DONE]
        assert count() == 6

        # Then past it, the buckets idle longer than RATE_PRUNE_AFTER go, the fresh one stays,
        # and a forgotten key is limited exactly as a new one: once through, the next held
        clock.advance(defaults.RATE_PRUNE_EVERY / 2)
        assert run("k0", "k0") == [Outcome.DONE, Outcome.HOLD]
        assert count() == 1
        consumer.close()


def test_a_bucket_is_pruned_only_once_both_its_times_are_past(store: FlowStore) -> None:
    now = 1_000.0
    # one let through (tat: now + 5, its interval counted from half an interval before now), two
    # held in line (wait_tat: now + 25)
    for n in range(3):
        store.take("t:slow", now=now, interval=10.0, tolerance=0.0, horizon=100.0, token=f"{n:032d}")
    assert store.prune(now + 5.5) == 0  # tat is past, the line is not
    assert store.prune(now + 24.5) == 0
    assert store.prune(now + 25.5) == 1


def test_a_site_file_overrides_the_sites_default(tmp_path: Path, store: FlowStore) -> None:
    config = Config.model_validate({"var_dir": str(tmp_path), "sites": {"rate_limit": "1/s"}})
    gate = FlowGate(config, lambda: store, clock=FakeClock())
    default, own, free = (
        SiteConfig(name="a"),
        SiteConfig(name="b", rate_limit="5/m"),
        SiteConfig(name="c", rate_limit="none"),
    )
    assert gate.site_rate(default) == Rate("1/s", 1.0, 1)
    assert gate.site_rate(own) == Rate("5/m", 12.0, 1)
    assert gate.site_rate(free) is None


def delivery(n: int) -> Delivery:
    return Delivery(f"id{n}", "a.example", "rec", b"{}", "application/json", {}, 1, 0.0)


def test_a_cap_holds_the_third_and_a_settled_item_frees_its_slot(tmp_path: Path, store: FlowStore) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, max_concurrent=2, concurrency_scope="host")
    gate = FlowGate(config, lambda: store, clock=clock, host="h1", uniform=lambda a, b: b)
    handler, site = Recorder(), SiteConfig(name="a.example")
    item = QueueItem("x", "a.example", "rec", {})
    one, two, three = delivery(1), delivery(2), delivery(3)
    assert gate.admit(one, item, handler, site) is None
    assert gate.admit(two, item, handler, site) is None
    held = gate.admit(three, item, handler, site)
    assert held is not None and held.limit == "concurrency" and held.delay == 1.0
    assert "concurrency cap of transport rec (2 running)" in (held.reason or "")
    gate.release(one)
    assert gate.admit(three, item, handler, site) is None
    assert gate.held_leases() == 2
    # another host has slots of its own (scope "host")
    other = FlowGate(config, lambda: store, clock=clock, host="h2")
    assert other.admit(delivery(4), item, handler, site) is None
    gate.close()
    other.close()  # its lease keeper's thread ends with it


def test_a_store_that_fails_holds_the_item(tmp_path: Path) -> None:
    def broken() -> FlowStore:
        raise QueueError("database down")

    gate = FlowGate(make_config(tmp_path, rate_limit="5/s"), broken, clock=FakeClock())
    held = gate.admit(delivery(1), QueueItem("x", "a.example", "rec", {}), Recorder(), SiteConfig(name="a.example"))
    assert held is not None and held.outcome is Outcome.HOLD and held.limit == "store"


def test_rates_are_checked_when_the_config_is_read() -> None:
    with pytest.raises(Exception, match="not a rate"):
        Config.model_validate({"transports": {"push": {"rate_limit": "20 per second"}}})
    config = Config.model_validate({"transports": {"push": {"rate_limit": "20/s", "rate_burst": 5}}})
    assert Rate.parse(config.transports["push"].rate_limit, 5) == Rate("20/s", 0.05, 5)
