"""Enqueue in the application's own transaction (``connection=``), on SQLite and PostgreSQL,
with an SQLAlchemy connection and with a DB-API one: rolled back with it, seen by a consumer
only after the commit."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from statusq import InvalidArgument, Item, QueueError
from statusq.config import Config
from statusq.queues.base import Subscription
from statusq.queues.db import DBQueueManager
from statusq.queues.memory import MemoryQueueManager


@pytest.fixture
def queue(db_url: str) -> Iterator[DBQueueManager]:
    manager = DBQueueManager(Config.model_validate({"queue": {"db_url": db_url}}))
    yield manager
    manager.close()


def sqlalchemy_connection(db_url: str) -> Any:
    url = db_url.replace("postgresql://", "postgresql+psycopg://")
    return create_engine(url).connect()


def dbapi_connection(db_url: str) -> Any:
    if db_url.startswith("sqlite:///"):
        return sqlite3.connect(db_url.removeprefix("sqlite:///"))
    import psycopg

    return psycopg.connect(db_url)


OPENERS: list[Callable[[str], Any]] = [sqlalchemy_connection, dbapi_connection]


def fetched(queue: DBQueueManager) -> list[Any]:
    consumer = queue.subscribe(Subscription())
    try:
        out = []
        while (delivery := consumer.fetch()) is not None:
            out.append(delivery.body)
            consumer.ack(delivery)
        return out
    finally:
        consumer.close()


def begin(conn: Any) -> None:
    if hasattr(conn, "begin") and not isinstance(conn, sqlite3.Connection):
        conn.begin()


@pytest.mark.parametrize("opener", OPENERS, ids=["sqlalchemy", "dbapi"])
def test_an_item_enqueued_in_a_transaction_is_rolled_back_with_it(
    queue: DBQueueManager, db_url: str, opener: Callable[[str], Any]
) -> None:
    conn = opener(db_url)
    try:
        begin(conn)
        queue.enqueue({"n": 1}, "push", "a.example", connection=conn)
        queue.enqueue_many([Item({"n": 2}, "push"), Item({"n": 3}, "push")], connection=conn)
        conn.rollback()
    finally:
        conn.close()
    assert fetched(queue) == []


@pytest.mark.parametrize("opener", OPENERS, ids=["sqlalchemy", "dbapi"])
def test_an_item_enqueued_in_a_transaction_is_seen_only_after_the_commit(
    queue: DBQueueManager, db_url: str, opener: Callable[[str], Any]
) -> None:
    conn = opener(db_url)
    try:
        begin(conn)
        first = queue.enqueue({"n": 1}, "push", "a.example", connection=conn)
        more = queue.enqueue_many([Item({"n": 2}, "push"), Item({"n": 3}, "push")], connection=conn)
        assert len({first, *more}) == 3
        if db_url.startswith("postgresql"):  # SQLite's writer locks readers' claims out instead
            assert fetched(queue) == [], "not before the commit"
        conn.commit()
    finally:
        conn.close()
    assert sorted(fetched(queue)) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']


def test_the_applications_own_rows_and_the_item_commit_together(queue: DBQueueManager, db_url: str) -> None:
    conn = sqlalchemy_connection(db_url)
    try:
        conn.execute(text("CREATE TABLE notices (id INTEGER PRIMARY KEY, body TEXT)"))
        conn.commit()
        conn.execute(text("INSERT INTO notices (id, body) VALUES (1, 'hello')"))
        queue.enqueue({"notice": 1}, "distrib", connection=conn)
        conn.commit()
        assert conn.execute(text("SELECT count(*) FROM notices")).scalar_one() == 1
    finally:
        conn.close()
    assert fetched(queue) == [b'{"notice":1}']


def test_a_connection_to_another_database_or_not_a_connection_is_refused(queue: DBQueueManager, tmp_path: Any) -> None:
    other = create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}").connect()
    try:
        with pytest.raises(InvalidArgument, match="not to the queue's database"):
            queue.enqueue({}, "push", connection=other)
    finally:
        other.close()
    with pytest.raises(InvalidArgument, match="connection"):
        queue.enqueue({}, "push", connection="postgresql://elsewhere")
    with pytest.raises(InvalidArgument, match="key"):
        queue.enqueue({}, "push", key="k", connection=other)


def test_a_dbapi_connection_to_a_database_without_the_table_is_a_queue_error(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'queue.sqlite'}"
    conn = sqlite3.connect(tmp_path / "empty.sqlite")
    try:
        with (
            DBQueueManager(Config.model_validate({"queue": {"db_url": url}})) as queue,
            pytest.raises(QueueError, match="no such table: statusq_items"),
        ):
            queue.enqueue({}, "push", connection=conn)
    finally:
        conn.close()


def test_other_backends_refuse_a_connection() -> None:
    with (
        MemoryQueueManager(Config.model_validate({"queue": {"subsystem": "memory"}})) as qm,
        pytest.raises(InvalidArgument, match="only the database backend"),
    ):
        qm.enqueue({}, "push", connection=object())
