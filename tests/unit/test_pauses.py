"""Pauses in the processor, over the real in-memory broker on a fake clock: a paused item is held
(not run, not dead-lettered), offered again after the hold, its attempt not counted; a resumed
one runs as its first attempt.  And the gate's own rules: re-read on a clock, refresh at once,
keep the last known set while the store fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from statusq.config import Config
from statusq.errors import InvalidArgument, QueueError
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.outcome import Outcome
from statusq.pauses import PauseGate
from statusq.processor import ItemProcessor
from statusq.queues.base import Subscription
from statusq.queues.db.pauses import Pause, PauseStore
from statusq.queues.memory import MemoryBroker, MemoryQueueManager
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import FakeClock

HOLD = 30.0


class Recorder(QueueHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def handle(self, item: QueueItem) -> bool:
        self.seen.append((item.site, item.attempt))
        return True


def site_pause(name: str) -> Pause:
    return Pause("site", name, "test", 0.0)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.model_validate({"var_dir": str(tmp_path), "queue": {"subsystem": "memory", "max_retries": 0}})


def test_a_paused_item_is_held_uncounted_and_runs_once_resumed(config: Config) -> None:
    # Given a paused site, on the memory backend, with no retries (a counted hold would kill it)
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    registry = HandlerRegistry()
    registry.register("rec", Recorder, group="main", plugin="test")
    handler = registry.handler("rec")
    assert isinstance(handler, Recorder)
    pauses = [site_pause("held.example")]
    gate = PauseGate(lambda: list(pauses), recheck=1.0, hold=HOLD, clock=clock)
    processor = ItemProcessor(
        registry, SiteTable(config), RetryPolicy(max_retries=0, delay=1.0, delay_max=1.0), pauses=gate, clock=clock
    )
    with MemoryQueueManager(config, broker) as qm:
        qm.enqueue({}, "rec", site="held.example")
        qm.enqueue({}, "rec", site="other.example")
        consumer = qm.subscribe(Subscription())

        # When both are fetched: the paused one is held, the other runs
        results = [processor.process(d, consumer).outcome for d in iter(consumer.fetch, None)]
        assert sorted(r.value for r in results) == ["done", "hold"]
        assert handler.seen == [("other.example", 1)]

        # Then it is not offered again before the hold is over, and again after (still held)
        clock.advance(HOLD - 1)
        assert consumer.fetch() is None
        clock.advance(1)
        again = consumer.fetch()
        assert again is not None and again.attempt == 1
        assert processor.process(again, consumer).outcome is Outcome.HOLD

        # When the site is resumed, it runs as its first attempt and nothing is dead
        pauses.clear()
        clock.advance(HOLD)
        delivery = consumer.fetch()
        assert delivery is not None
        assert processor.process(delivery, consumer).outcome is Outcome.DONE
        assert handler.seen == [("other.example", 1), ("held.example", 1)]
        assert qm.dead_letters() == [] and qm.backlog() == []
        consumer.close()


def test_the_gate_rereads_on_its_clock_and_at_once_when_refreshed() -> None:
    clock = FakeClock()
    found: list[Pause] = []
    reads: list[int] = []

    def load() -> list[Pause]:
        reads.append(1)
        return list(found)

    gate = PauseGate(load, recheck=2.0, clock=clock)
    assert gate.held("a.example", "push") is None
    found.append(Pause("transport", "push", "", 0.0))
    clock.advance(1.0)
    assert gate.held("a.example", "push") is None  # not re-read yet
    gate.refresh()
    pause = gate.held("a.example", "push")
    assert pause is not None and pause.describe() == "transport push paused"
    assert gate.held("a.example", "mail") is None
    assert len(reads) == 2


def test_a_failing_store_keeps_the_pauses_last_read() -> None:
    clock = FakeClock()
    answers: list[list[Pause] | Exception] = [[site_pause("a.example")], QueueError("database down")]

    def load() -> list[Pause]:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    gate = PauseGate(load, recheck=1.0, clock=clock)
    assert gate.held("a.example", "push") is not None
    clock.advance(1.0)
    assert gate.held("a.example", "push") is not None  # the read failed: still held


def test_the_store_pauses_resumes_and_refuses_a_scope_of_none_or_both(tmp_path: Path) -> None:
    store = PauseStore.open(f"sqlite:///{tmp_path / 'p.sqlite'}")
    first = store.pause(site="a.example", reason="one")
    again = store.pause(site="a.example", reason="two")
    assert again.paused_at == first.paused_at and again.reason == "two"
    store.pause(transport="push")
    assert [(p.kind, p.name) for p in store.list()] == [("site", "a.example"), ("transport", "push")]
    assert store.resume(site="a.example") is True and store.resume(site="a.example") is False
    with pytest.raises(InvalidArgument, match="exactly one"):
        store.pause()
    with pytest.raises(InvalidArgument, match="exactly one"):
        store.resume(site="a", transport="b")
    store.close()
