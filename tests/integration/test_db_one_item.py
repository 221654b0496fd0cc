"""One item per ``enqueue`` on the database backend, against real SQLite files and the real
PostgreSQL server: on PostgreSQL one autocommitted statement on psycopg's own connections
(statusq.queues.db.inserts.OneByOne), whose row, NOTIFY, errors, lost connections, threads and
forks are checked here."""

from __future__ import annotations

import json
import os
import threading
import time

import psycopg
import pytest
from sqlalchemy import text

from statusq.config import Config, DaemonConfig, QueueConfig
from statusq.errors import QueueError
from statusq.queues.db import DBQueueManager
from statusq.queues.db.listen import open_listener
from statusq.queues.db.schema import NOTIFY_CHANNEL
from tests.integration.test_db_enqueue import REFUSED_TYPE, refuse_odd_content_types

#: What a producer writes, in the order of statusq.queues.db.inserts.COPY_COLUMNS after id.
COLUMNS = (
    "site, transport, priority, content_type, body, headers, attempts, enqueued_at, available_at, held, expires_at"
)


def manager(url: str) -> DBQueueManager:
    return DBQueueManager(Config(queue=QueueConfig(db_url=url), daemon=DaemonConfig(time_limit=0)))


def rows(qm: DBQueueManager) -> dict[str, tuple]:  # type: ignore[type-arg]
    with qm.engine.connect() as conn:
        return {str(row[0]): tuple(row[1:]) for row in conn.execute(text(f"SELECT id, {COLUMNS} FROM statusq_items"))}


def producer_pids(qm: DBQueueManager) -> list[int]:
    """The server-side pids of the producer's idle connections (PostgreSQL)."""
    one_by_one = qm._one_by_one
    assert one_by_one is not None
    return [cursor.connection.info.backend_pid for cursor in one_by_one._idle]


def test_each_item_is_stored_under_the_id_it_returns(db_url: str) -> None:
    # Given items of every kind, enqueued one per call
    qm = manager(db_url)
    before = time.time()
    ids = [
        qm.enqueue({"text": "héllo\u2028"}, "demo", site="a.example", headers={"k": "v"}),
        qm.enqueue(b"\x00\xff raw", "other", priority=9),
        qm.enqueue("later", "demo", delay=60),
        qm.enqueue("soon gone", "demo", expires=3600),
        qm.enqueue("keyed", "demo", key="k1", unique_for=60),
    ]
    after = time.time()

    # Then each row holds what its call gave, under the id that call returned
    stored = rows(qm)
    assert sorted(stored) == sorted(ids) and len(set(ids)) == 5
    site, transport, priority, content_type, body, headers, attempts, enqueued, available, held, expires = stored[
        ids[0]
    ]
    assert (site, transport, priority, content_type) == ("a.example", "demo", 4, "application/json")
    assert bytes(body) == '{"text":"héllo\u2028"}'.encode() and json.loads(headers) == {"k": "v"}
    assert (attempts, held, expires) == (0, 0, None) and before <= enqueued == available <= after
    raw = stored[ids[1]]
    assert (raw[1], raw[2], raw[3], bytes(raw[4])) == ("other", 9, "application/octet-stream", b"\x00\xff raw")
    later = stored[ids[2]]
    assert later[9] == 1 and later[8] == pytest.approx(later[7] + 60)
    assert stored[ids[3]][10] == pytest.approx(before + 3600, abs=60)
    assert json.loads(stored[ids[4]][5])["x-statusq-key"] == "k1"

    # And a keyed item again adds nothing: the key's item is returned
    assert qm.enqueue("keyed again", "demo", key="k1") == ids[4]
    assert len(rows(qm)) == 5
    qm.close()


def test_an_item_the_database_refuses_leaves_no_row_and_the_next_goes_in(db_url: str) -> None:
    # Given an item the database refuses (PostgreSQL: a content type longer than its column;
    # SQLite: a trigger)
    qm = manager(db_url)
    refuse_odd_content_types(qm)
    with pytest.raises(QueueError, match="database"):
        qm.enqueue(b"x", "demo", content_type=REFUSED_TYPE)

    # Then nothing is queued, and the next item goes in (on PostgreSQL on the same connection)
    assert rows(qm) == {}
    pids = producer_pids(qm) if qm.db.is_postgres else []
    item_id = qm.enqueue(1, "demo")
    assert list(rows(qm)) == [item_id]
    if qm.db.is_postgres:
        assert producer_pids(qm) == pids
    qm.close()


@pytest.mark.postgres
def test_postgres_an_item_notifies_its_transport(pg_url: str) -> None:
    qm = manager(pg_url)
    listener = open_listener(qm.engine, NOTIFY_CHANNEL)  # its schema's channel, as a consumer's

    qm.enqueue(1, "demo_notify")

    # (tests running beside this one, in schemas of their own, notify on channels of their own)
    first = next(listener.notifies(timeout=10), None)
    assert first is not None and first.payload == "demo_notify", first
    listener.close()
    qm.close()


@pytest.mark.postgres
def test_postgres_a_lost_connection_is_replaced_and_the_item_queued_once(pg_url: str) -> None:
    # Given a producer whose connection the server has ended (a restart, an administrator)
    qm = manager(pg_url)
    first = qm.enqueue(1, "demo")
    [pid] = producer_pids(qm)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    # When it enqueues again, then the item goes in once, on a new connection
    second = qm.enqueue(2, "demo")
    assert sorted(rows(qm)) == sorted([first, second])
    assert producer_pids(qm) != [pid]
    qm.close()


@pytest.mark.postgres
def test_postgres_threads_enqueue_at_once(pg_url: str) -> None:
    qm = manager(pg_url)
    ids: list[str] = []

    def produce(n: int) -> None:
        for i in range(25):
            ids.append(qm.enqueue({"n": n, "i": i}, "demo"))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(set(ids)) == 100 and sorted(rows(qm)) == sorted(ids)
    assert len(producer_pids(qm)) <= 2, "at most two idle connections are kept"
    qm.close()


@pytest.mark.postgres
def test_postgres_a_forked_child_leaves_its_parents_connection_alone(pg_url: str) -> None:
    # Given a producer with its connection open, then forked (a web server's workers)
    qm = manager(pg_url)
    qm.enqueue("parent", "demo")
    [pid] = producer_pids(qm)

    child = os.fork()
    if child == 0:  # the child closes what it inherited, then enqueues on a connection of its own
        ok = False
        try:
            qm.close()
            qm.enqueue("child", "demo")
            ok = producer_pids(qm) != [pid]
            qm.close()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)

    # Then the child's item is queued, and the parent goes on on its own connection
    assert os.waitstatus_to_exitcode(status) == 0
    qm.enqueue("parent again", "demo")
    assert producer_pids(qm) == [pid]
    assert len(rows(qm)) == 3
    qm.close()
