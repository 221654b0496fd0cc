"""The transactional outbox's relay (statusq.queues.db.outbox), on SQLite and PostgreSQL: only
committed rows go, in order, with their ids; a row leaves only once the send was confirmed."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from statusq.errors import QueueError
from statusq.item import Message
from statusq.queues.db.outbox import open_outbox, outbox, relay, write


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = open_outbox(db_url)
    yield e
    e.dispose()


def message(n: int, delay: float = 0.0) -> Message:
    return Message("a.example", "push", f'{{"n":{n}}}'.encode(), "application/json", {"h": "v"}, 4, delay=delay)


def left(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())


def app_connection(engine: Engine, db_url: str) -> Any:
    if db_url.startswith("sqlite"):
        return sqlite3.connect(db_url.removeprefix("sqlite:///"))
    return engine.connect()


def test_committed_rows_are_relayed_in_order_with_their_ids_and_then_deleted(engine: Engine, db_url: str) -> None:
    conn = app_connection(engine, db_url)
    ids = write(engine, conn, [message(1), message(2, delay=30)])
    conn.rollback()
    conn.close()
    assert left(engine) == 0, "a rolled-back enqueue leaves nothing"
    conn = app_connection(engine, db_url)
    ids = write(engine, conn, [message(1), message(2, delay=30)])
    conn.commit()
    conn.close()
    sent: list[Message] = []
    assert relay(engine, sent.extend) == 2
    assert [m.id for m in sent] == ids and [m.body for m in sent] == [b'{"n":1}', b'{"n":2}']
    assert sent[0].delay == 0 and 25 < sent[1].delay <= 30, "the delay's end is kept"
    assert sent[0].headers == {"h": "v"} and sent[0].priority == 4
    assert left(engine) == 0 and relay(engine, sent.extend) == 0


def test_a_send_that_fails_leaves_the_rows_for_the_next_turn(engine: Engine, db_url: str) -> None:
    conn = app_connection(engine, db_url)
    write(engine, conn, [message(1)])
    conn.commit()
    conn.close()

    def broker_down(messages: list[Message]) -> None:
        raise QueueError("broker unreachable")

    with pytest.raises(QueueError):
        relay(engine, broker_down)
    assert left(engine) == 1
    assert relay(engine, lambda messages: None) == 1
    assert left(engine) == 0
