"""DispatchHooks inside the real ItemProcessor: a run's progress, its end, the current item, and
"last processed" recorded only when a handler succeeded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from statusq.config import Config
from statusq.dispatcher.hooks import DispatchHooks, run_item
from statusq.dispatcher.simulate import Enqueued, Simulation
from statusq.dispatcher.tables import members
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.middleware import MiddlewareChain
from statusq.outcome import Outcome, Result
from statusq.periodic import WorkItem, declare
from statusq.processor import ItemProcessor
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from tests.unit.fakes import RecordingConsumer, make_delivery


class Cron(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        if item.payload["key"] == "broken.example":
            raise RuntimeError("cron.php answered 500")
        return True


@pytest.fixture
def sim(tmp_path: Path) -> Simulation:
    sites = ["a.example", "b.example", "broken.example"]
    spec = declare("cron", "batch", transport="cron", plugin="t", members=lambda: [WorkItem(s, site=s) for s in sites])
    return Simulation([spec], url=f"sqlite:///{tmp_path / 'd.sqlite'}")


def processor(hooks: DispatchHooks, max_retries: int = 0) -> ItemProcessor:
    registry = HandlerRegistry()
    registry.register("cron", Cron, group="main", plugin="t")
    return ItemProcessor(
        registry, SiteTable(Config()), RetryPolicy(max_retries, 0.01, 0.01), middleware=MiddlewareChain([hooks])
    )


def delivery(item: Enqueued, attempt: int = 1) -> Delivery:
    """The item as a backend hands it to a worker."""
    return Delivery(
        id="1",
        site=item.site or "default",
        transport=item.transport,
        body=json.dumps(item.payload).encode(),
        content_type="application/json",
        headers=item.headers,
        attempt=attempt,
        enqueued_at=item.at,
    )


def processed(sim: Simulation) -> dict[str, float | None]:
    with sim.store.engine.connect() as conn:
        return dict(conn.execute(select(members.c.key, members.c.last_processed)).all())


def test_a_run_ends_when_its_last_item_is_settled_and_only_successes_count_as_processed(sim: Simulation) -> None:
    # Given a run of three sites, one of whose cron fails for good
    sim.tick()
    hooks = DispatchHooks(sim.store.engine.url.render_as_string(), clock=sim.clock)
    work = processor(hooks)
    consumer = RecordingConsumer()
    a, b, broken = sim.queue_manager.items

    # When the first two are handled
    sim.clock.now += 5
    work.process(delivery(a), consumer)
    work.process(delivery(broken), consumer)
    row = sim.store.row("cron")
    assert row is not None and row.run is not None
    assert (row.run.done, row.run.failed, row.run.finished) == (1, 1, None)

    # Then the run finishes with the third, and only the successes were marked processed
    sim.clock.now += 5
    work.process(delivery(b), consumer)
    row = sim.store.row("cron")
    assert row is not None and row.run is not None
    assert (row.run.done, row.run.failed, row.run.finished, row.run.current) == (2, 1, sim.clock.now, None)
    assert processed(sim) == {"a.example": sim.clock.now - 5, "b.example": sim.clock.now, "broken.example": None}
    assert len(consumer.dead) == 1
    hooks.close()


def test_a_retry_is_still_the_runs_business_and_the_current_item_shows(sim: Simulation) -> None:
    sim.tick()
    hooks = DispatchHooks(sim.store.engine.url.render_as_string(), clock=sim.clock)
    broken = sim.queue_manager.items[2]
    processor(hooks, max_retries=3).process(delivery(broken), RecordingConsumer())
    row = sim.store.row("cron")
    assert row is not None and row.run is not None
    assert (row.run.done, row.run.failed, row.run.finished) == (0, 0, None)
    hooks.before_item(delivery(broken, attempt=2))
    row = sim.store.row("cron")
    assert row is not None and row.run is not None and row.run.current == "broken.example"
    hooks.close()


def test_ordinary_and_malformed_items_are_ignored_without_connecting() -> None:
    hooks = DispatchHooks("postgresql://127.0.0.1:1/nowhere")
    plain = make_delivery({"n": 1})
    forged = make_delivery({"n": 1})
    forged.headers = {"dispatch-queue": "cron", "dispatch-run": "one", "dispatch-key": "k"}
    for item in (plain, forged):
        assert run_item(item) is None
        hooks.before_item(item)
        hooks.after_item(item, Result(Outcome.DONE))
    assert hooks._store is None


def test_a_database_outage_is_one_log_line_not_a_failed_item(caplog: pytest.LogCaptureFixture) -> None:
    hooks = DispatchHooks("postgresql://127.0.0.1:1/nowhere")
    item = make_delivery({"n": 1})
    item.headers = {"dispatch-queue": "cron", "dispatch-run": "4", "dispatch-key": "a.example"}
    with caplog.at_level(logging.WARNING):
        hooks.after_item(item, Result(Outcome.DONE))
    assert "queue cron run 4: cannot record item a.example done: database postgresql" in caplog.text
    assert "Traceback" not in caplog.text
