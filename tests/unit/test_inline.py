"""statusq.queues.inline: the in-memory backend, driven through a Runtime with a real plugin folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from statusq.config import Config
from statusq.errors import DataError
from statusq.queues.base import BacklogRow, Subscription
from statusq.queues.inline import InlineQueueManager
from statusq.runtime import Runtime
from tests.unit.fakes import write_plugin

FLAKY_PLUGIN = """
    from statusq import QueueHandler, current_site

    class Flaky(QueueHandler):
        '''Fails while the item's attempt is <= payload["fail"], or while `down` is set.'''

        def __init__(self):
            self.calls = []
            self.down = False

        def handle(self, item):
            self.calls.append((item.id, item.attempt, current_site().name))
            if self.down or item.attempt <= item.payload.get("fail", 0):
                raise ValueError(f"attempt {item.attempt} failed")
            return True

    def register(api):
        api.register_handler("flaky", Flaky)
    """

MAX_RETRIES = 3


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    write_plugin(tmp_path / "plugins", "flaky", FLAKY_PLUGIN)
    (tmp_path / "sites").mkdir()
    (tmp_path / "sites" / "example.org.toml").write_text("")
    return Runtime(
        Config.model_validate(
            {
                "queue": {"subsystem": "inline", "max_retries": MAX_RETRIES, "retry_delay": "1h"},
                "plugins": {"paths": [str(tmp_path / "plugins")]},
                "sites": {"dir": str(tmp_path / "sites")},
            }
        )
    )


@pytest.fixture
def queue(runtime: Runtime) -> Iterator[InlineQueueManager]:
    manager = runtime.queue_manager()
    assert isinstance(manager, InlineQueueManager)
    with manager:
        yield manager


@pytest.fixture
def handler(runtime: Runtime) -> Any:
    """The process's Flaky instance, to look at its calls and take its dependency down."""
    return runtime.registry.handler("flaky")


def test_enqueue_runs_the_handler_at_once(queue: InlineQueueManager, handler: Any) -> None:
    item_id = queue.enqueue({"n": 1}, "flaky", site="example.org")

    assert item_id == "inline-1"
    assert handler.calls == [("inline-1", 1, "example.org")]
    assert queue.handled == 1
    assert queue.dead == []


def test_enqueue_without_a_site_uses_the_default_site(queue: InlineQueueManager, handler: Any) -> None:
    queue.enqueue({}, "flaky")

    assert handler.calls[0][2] == "default"


def test_failing_twice_then_succeeding_is_done(queue: InlineQueueManager, handler: Any) -> None:
    # Given a handler that fails on the first two attempts (max_retries=3 allows four)
    # When the item is enqueued
    queue.enqueue({"fail": 2}, "flaky")

    # Then it was retried at once, without waiting out the 1h backoff, and is done
    assert [attempt for _id, attempt, _site in handler.calls] == [1, 2, 3]
    assert queue.handled == 1
    assert queue.dead == []


def test_always_failing_is_one_dead_letter(queue: InlineQueueManager, handler: Any) -> None:
    item_id = queue.enqueue({"fail": 99}, "flaky", site="example.org", headers={"k": "v"})

    [letter] = queue.dead
    assert letter.id == item_id
    assert letter.attempts == MAX_RETRIES + 1
    assert letter.error == f"ValueError: attempt {MAX_RETRIES + 1} failed (gave up after {MAX_RETRIES + 1} attempts)"
    assert (letter.site, letter.transport, letter.headers) == ("example.org", "flaky", {"k": "v"})
    assert letter.body == b'{"fail":99}'
    assert letter.dead_at >= letter.enqueued_at
    assert len(handler.calls) == MAX_RETRIES + 1
    assert queue.handled == 0


def test_unknown_transport_is_dead_lettered(queue: InlineQueueManager) -> None:
    queue.enqueue({}, "nobody.handles.this")

    assert queue.dead[0].error == "no handler registered for transport 'nobody.handles.this'"
    assert queue.dead[0].attempts == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transport": "Bad Name"}, "invalid transport"),
        ({"transport": "flaky", "site": "not a site!"}, "invalid site"),
        ({"transport": "flaky", "priority": 10}, "invalid priority"),
        ({"transport": "flaky", "headers": {"k": 1}}, "headers"),
    ],
)
def test_enqueue_refuses_bad_arguments(queue: InlineQueueManager, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        queue.enqueue({}, **kwargs)  # type: ignore[arg-type]
    assert queue.handled == 0


def test_enqueue_refuses_a_payload_that_cannot_travel(queue: InlineQueueManager) -> None:
    with pytest.raises(DataError, match="not JSON-serializable"):
        queue.enqueue({"x": object()}, "flaky")


def test_requeue_dead_runs_them_again_with_a_fresh_attempt_count(queue: InlineQueueManager, handler: Any) -> None:
    # Given two dead letters, made while the handler's dependency was down
    handler.down = True
    first = queue.enqueue({}, "flaky")
    second = queue.enqueue({}, "flaky")
    assert len(queue.dead) == 2

    # When the dependency is back and one of them is requeued
    handler.down = False
    handler.calls.clear()
    assert queue.requeue_dead([first]) == 1

    # Then it ran once, from attempt 1, and only the other one is still dead
    assert handler.calls == [(first, 1, "default")]
    assert queue.handled == 1
    assert [d.id for d in queue.dead] == [second]

    # And requeueing all takes the rest
    assert queue.requeue_dead() == 1
    assert queue.dead == []
    assert queue.handled == 2


def test_requeue_of_a_still_failing_item_dies_again(queue: InlineQueueManager) -> None:
    item_id = queue.enqueue({"fail": 99}, "flaky")

    assert queue.requeue_dead() == 1

    assert [(d.id, d.attempts) for d in queue.dead] == [(item_id, MAX_RETRIES + 1)]


def test_purge_dead(queue: InlineQueueManager, handler: Any) -> None:
    handler.down = True
    ids = [queue.enqueue({}, "flaky") for _ in range(3)]

    assert queue.purge_dead([ids[1], "no-such-id"]) == 1
    assert [d.id for d in queue.dead] == [ids[0], ids[2]]
    assert queue.purge_dead() == 2
    assert queue.dead == []
    assert queue.purge_dead() == 0


def test_dead_letters_newest_first_with_a_limit(queue: InlineQueueManager, handler: Any) -> None:
    handler.down = True
    ids = [queue.enqueue({}, "flaky") for _ in range(3)]

    assert [d.id for d in queue.dead_letters()] == ids[::-1]
    assert [d.id for d in queue.dead_letters(limit=2)] == [ids[2], ids[1]]


def test_backlog_counts_dead_per_site_and_transport(queue: InlineQueueManager, handler: Any) -> None:
    handler.down = True
    queue.enqueue({}, "flaky", site="example.org")
    queue.enqueue({}, "flaky", site="example.org")
    queue.enqueue({}, "flaky")
    queue.enqueue({}, "other")

    assert queue.backlog() == [
        BacklogRow("default", "flaky", dead=1),
        BacklogRow("default", "other", dead=1),
        BacklogRow("example.org", "flaky", dead=2),
    ]


def test_backlog_is_empty_when_all_is_done(queue: InlineQueueManager) -> None:
    queue.enqueue({}, "flaky")

    assert queue.backlog() == []


def test_subscribe_gives_a_consumer_with_nothing_to_fetch(queue: InlineQueueManager) -> None:
    assert queue.subscribe(Subscription()).fetch() is None
