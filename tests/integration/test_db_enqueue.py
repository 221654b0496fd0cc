"""The database backend's side of delays, batches and expiry, against real SQLite files and the
real PostgreSQL server: held rows, one transaction per batch, tables of an older release."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, inspect, text

from statusq import InvalidArgument, Item
from statusq.config import Config, DaemonConfig, QueueConfig
from statusq.errors import QueueError
from statusq.queues.base import Subscription
from statusq.queues.db import DBQueueManager
from tests.conftest import closed_after_test


def manager(url: str) -> DBQueueManager:
    return closed_after_test(DBQueueManager(Config(queue=QueueConfig(db_url=url), daemon=DaemonConfig(time_limit=0))))


def fetch_soon(consumer, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (delivery := consumer.fetch()) is not None:
            return delivery
        time.sleep(0.02)
    return None


def test_a_held_row_is_claimed_only_once_due_and_a_batch_is_one_transaction(db_url: str) -> None:
    # Given a batch: one item delayed 0.5 s, one now, one expiring in an hour
    qm = manager(db_url)
    held, now, expiring = qm.enqueue_many(
        [Item("held", "demo", delay=0.5), Item("now", "demo"), Item("expiring", "demo", expires=3600)]
    )
    consumer = qm.subscribe(Subscription())

    # Then the items not delayed come first, the expiry on the row; the held one only later
    first, second = consumer.fetch(), consumer.fetch()
    assert first is not None and second is not None
    assert [first.id, second.id] == [now, expiring]
    assert first.expires_at is None and second.expires_at is not None
    assert second.expires_at == pytest.approx(time.time() + 3600, abs=60)
    assert consumer.fetch() is None
    [row] = qm.backlog()
    assert (row.delayed, row.in_flight) == (1, 2)
    late = fetch_soon(consumer)
    assert late is not None and late.id == held


def test_a_bad_batch_leaves_no_row(db_url: str) -> None:
    qm = manager(db_url)
    with pytest.raises(InvalidArgument, match=r"items\[2\]: transport"):
        qm.enqueue_many([Item(1, "demo"), Item(2, "demo"), Item(3, "Bad Name")])
    assert qm.backlog() == []


def test_a_batch_writes_every_row_under_the_id_it_returns(db_url: str) -> None:
    # Given a batch whose last item was cancelled (a gap in the ids), then a mixed batch of 300
    qm = manager(db_url)
    first = qm.enqueue_many([Item(n, "demo") for n in range(3)])
    assert qm.cancel(first[-1:]).removed == first[-1:]
    items = [
        Item(
            bytes([n % 256, 0, 255]) if n % 3 == 0 else {"n": n, "text": "é\u2028"},
            "demo" if n % 2 else "other",
            site=f"s{n % 4}.example",
            headers={"h": str(n)} if n % 5 == 0 else None,
            priority=n % 10 if n % 7 else None,
            delay=60 if n % 11 == 0 else None,
            expires=3600 if n % 13 == 0 else None,
        )
        for n in range(300)
    ]
    ids = qm.enqueue_many(items)

    # Then the ids ascend after the first batch's, and each row holds what its item gave
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and int(ids[0]) > int(first[-1])
    columns = "id, site, transport, priority, content_type, body, headers, attempts, held, expires_at"
    with qm.engine.connect() as conn:
        rows = {str(row[0]): row[1:] for row in conn.execute(text(f"SELECT {columns} FROM statusq_items"))}
    for item_id, item in zip(ids, items, strict=True):
        site, transport, priority, content_type, body, headers, attempts, held, expires_at = rows[item_id]
        raw = isinstance(item.payload, bytes)
        assert (site, transport, priority) == (item.site, item.transport, 4 if item.priority is None else item.priority)
        assert content_type == ("application/octet-stream" if raw else "application/json")
        assert bytes(body) == (
            item.payload if raw else json.dumps(item.payload, separators=(",", ":"), ensure_ascii=False).encode()
        )
        assert json.loads(headers) == (item.headers or {})
        assert (attempts, held, expires_at is None) == (0, int(item.delay is not None), item.expires is None)
    assert len(rows) == 2 + 300


#: An item whose content type is this long is refused by the database (see below).
REFUSED_TYPE = "x/" + "y" * 200


def refuse_odd_content_types(qm: DBQueueManager) -> None:
    """Make the database refuse a row with a content type like REFUSED_TYPE: PostgreSQL does
    already (longer than its column), SQLite is given a trigger."""
    if qm.db.is_postgres:
        return
    with qm.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON statusq_items WHEN NEW.content_type LIKE 'x/%' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )


def test_a_batch_the_database_refuses_leaves_no_row(db_url: str) -> None:
    # Given a batch whose last row the database refuses (PostgreSQL: a content type longer than
    # its column; SQLite: a trigger)
    qm = manager(db_url)
    refuse_odd_content_types(qm)
    bad = Item(b"x", "demo", content_type=REFUSED_TYPE)
    with pytest.raises(QueueError):
        qm.enqueue_many([Item(n, "demo") for n in range(50)] + [bad])

    # Then nothing of it is queued, and the next batch goes in whole
    assert qm.backlog() == []
    assert len(qm.enqueue_many([Item(n, "demo") for n in range(50)])) == 50
    [row] = qm.backlog()
    assert row.ready == 50


def test_held_rows_stay_out_of_the_claims_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SQLite says how it would claim: through the partial index of rows not held, so a claim
    # never walks past delayed rows (before, 100,000 of them cost every claim 45 ms).
    url = f"sqlite:///{tmp_path / 'q.sqlite'}"
    qm = manager(url)
    qm.enqueue_many([Item(n, "demo", delay=3600) for n in range(100)])
    claim = "SELECT id FROM statusq_items WHERE statusq_items.held = 0 AND available_at <= 1 ORDER BY priority DESC, id"
    with qm.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text("EXPLAIN QUERY PLAN " + claim)))
        promote = "UPDATE statusq_items SET held = 0 WHERE statusq_items.held = 1 AND available_at <= 1"
        plan_promote = " ".join(str(row[-1]) for row in conn.execute(text("EXPLAIN QUERY PLAN " + promote)))
    assert "statusq_items_ready" in plan
    assert "statusq_items_held" in plan_promote


OLD_TABLE = """
CREATE TABLE statusq_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT, site VARCHAR(255) NOT NULL, transport VARCHAR(64) NOT NULL,
    priority SMALLINT NOT NULL, content_type VARCHAR(128) NOT NULL, body BLOB NOT NULL,
    headers TEXT NOT NULL, attempts INTEGER NOT NULL, enqueued_at FLOAT NOT NULL,
    available_at FLOAT NOT NULL, claimed_by VARCHAR(128), claimed_at FLOAT, last_error TEXT)
"""


def test_a_table_of_the_previous_release_is_upgraded_in_place(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Given a queue table as the previous release made it, with an item waiting
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(OLD_TABLE))
        conn.execute(text("CREATE INDEX statusq_items_next ON statusq_items (priority DESC, id)"))
        conn.execute(
            text(
                "INSERT INTO statusq_items (site, transport, priority, content_type, body, headers, attempts,"
                " enqueued_at, available_at) VALUES ('a', 'demo', 4, 'application/json', '1', '{}', 0, 1, 1)"
            )
        )
    engine.dispose()

    # When this release opens it (twice: the second finds nothing to do)
    qm = manager(url)
    manager(url).close()

    # Then the columns and indexes are there, and the old item and new ones are served
    inspector = inspect(qm.engine)
    assert {"expires_at", "held"} <= {c["name"] for c in inspector.get_columns("statusq_items")}
    indexes = {i["name"] for i in inspector.get_indexes("statusq_items")}
    assert indexes == {"statusq_items_ready", "statusq_items_held", "statusq_items_sites"}
    new = qm.enqueue("new", "demo", expires=60)
    consumer = qm.subscribe(Subscription())
    old, fresh = consumer.fetch(), consumer.fetch()
    assert old is not None and old.id == "1" and old.expires_at is None
    assert fresh is not None and fresh.id == new and fresh.expires_at is not None
