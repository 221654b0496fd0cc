"""Fair turns across sites on the database backend (statusq/queues/db/turns.py), on SQLite and
PostgreSQL: which items one claim takes, in which order they run, and that the claim reads an
index range per site, never the backlog."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import inspect, text

from statusq import Item
from statusq.config import Config, DaemonConfig, DBConfig, QueueConfig
from statusq.queues.base import Subscription
from statusq.queues.db import DBQueueManager
from statusq.queues.db.claims import claim_params, claim_statement


def manager(url: str, prefetch: int | None = None) -> DBQueueManager:
    queue = QueueConfig(db_url=url, db=DBConfig(prefetch=prefetch))
    return DBQueueManager(Config(queue=queue, daemon=DaemonConfig(time_limit=0)))


def drain(qm: DBQueueManager, n: int) -> list[tuple[str, int, Any]]:
    consumer = qm.subscribe(Subscription())
    got = []
    for _ in range(n):
        delivery = consumer.fetch()
        assert delivery is not None
        got.append((delivery.site, delivery.priority, json.loads(delivery.body)))
        consumer.ack(delivery)
    consumer.close()
    return got


def test_a_batch_takes_sites_in_turns_and_a_higher_priority_first(db_url: str) -> None:
    # Given a flood for one site, then a few items for two others, and one urgent item
    qm = manager(db_url, prefetch=6)
    qm.enqueue_many([Item(n, "demo", site="a.example") for n in range(100)])
    qm.enqueue_many([Item(n, "demo", site="b.example") for n in range(2)])
    qm.enqueue_many([Item(n, "demo", site="c.example") for n in range(2)])
    qm.enqueue_many([Item("urgent", "demo", site="z.example", priority=9)])

    # When a worker claims batches of 6
    order = drain(qm, 10)
    qm.close()

    # Then the urgent item first (a batch of its priority alone), then the sites in turns, each
    # site's items oldest first, until the small ones are done and the flood goes on
    assert order == [
        ("z.example", 9, "urgent"),
        ("a.example", 4, 0),
        ("b.example", 4, 0),
        ("c.example", 4, 0),
        ("a.example", 4, 1),
        ("b.example", 4, 1),
        ("c.example", 4, 1),
        ("a.example", 4, 2),
        ("a.example", 4, 3),
        ("a.example", 4, 4),
    ]


def test_with_more_sites_than_a_batch_holds_the_turn_goes_round(db_url: str) -> None:
    # Given 5 sites with 3 items each, and claims of 2 items
    qm = manager(db_url, prefetch=2)
    for site in "abcde":
        qm.enqueue_many([Item(n, "demo", site=f"{site}.example") for n in range(3)])

    # Then each claim serves the next two sites, wrapping round: every site's first item runs
    # before any site's second
    order = drain(qm, 15)
    qm.close()
    sites = [site[0] for site, _, _ in order]
    assert sorted(sites[:5]) == list("abcde")
    assert [n for _, _, n in order[:5]] == [0] * 5
    assert [n for _, _, n in order[5:10]] == [1] * 5


def test_a_claim_walks_indexes_not_the_backlog(db_url: str) -> None:
    # Given 10,000 ready items of one site and 10 of another
    qm = manager(db_url)
    qm.enqueue_many([Item(n, "demo", site="a.example") for n in range(10_000)])
    qm.enqueue_many([Item(n, "demo", site="b.example") for n in range(10)])
    postgres = qm.db.is_postgres
    stmt = claim_statement(Subscription(), "probe", skip_locked=postgres)
    compiled = stmt.compile(qm.db.engine)
    params = compiled.construct_params(claim_params(100, time.time(), 60.0))

    # When the claim's plan is read (without running it on PostgreSQL: EXPLAIN alone)
    with qm.db.consumer_connection() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        if postgres:
            cursor.execute("EXPLAIN " + str(compiled), params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + str(compiled), [params[k] for k in compiled.positiontup or []])
        plan = "\n".join(str(row[-1]) for row in cursor.fetchall())
        conn.rollback()
    qm.close()

    # Then every read of the items table is an index search (SQLite: no "SCAN" of it, only of
    # the statement's own small CTEs; PostgreSQL: no sequential scan, no hash of the backlog)
    if postgres:
        assert "Seq Scan" not in plan and "Hash Join" not in plan, plan
        assert "statusq_items_sites" in plan, plan
    else:
        scans = [line for line in plan.splitlines() if line.startswith("SCAN ")]
        tables = ("statusq_items", "x", "u", "s", "t")  # the statement's names for the items table
        assert all(line.split()[1] not in tables or "USING INDEX" in line for line in scans), plan
        assert "SEARCH x USING INDEX statusq_items_sites (priority=? AND site=? AND id<?)" in plan, plan


def test_an_index_of_the_turns_is_made_on_an_older_table(db_url: str) -> None:
    qm = manager(db_url)
    with qm.engine.begin() as conn:
        conn.execute(text("DROP INDEX statusq_items_sites"))
    qm.close()
    qm = manager(db_url)  # opening it again adds what is missing
    with qm.engine.connect() as conn:
        names = {i["name"] for i in inspect(conn).get_indexes("statusq_items")}
    qm.close()
    assert "statusq_items_sites" in names
