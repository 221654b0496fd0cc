"""The transactional outbox end to end on ActiveMQ and RabbitMQ: an application enqueues in its
own SQLite transaction (``[queue.stomp] outbox_url``); a rolled-back item never runs, a committed
one is relayed by the daemon to the broker and handled, with the id enqueue returned."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from tests.conftest import start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["activemq", "rabbitmq"])
def test_only_committed_items_reach_the_broker_and_run(
    backend: str, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    app_db = tmp_path / "app.sqlite"
    toml = stomp_toml(make_broker(backend)) + f'outbox_url = "sqlite:///{app_db}"\noutbox_poll = "50ms"\n'
    config = write_config(f"sqlite:///{tmp_path / 'state.sqlite'}", toml, queue={"subsystem": "stomp"})
    with statusq.connect(config) as qm:
        app = sqlite3.connect(app_db)
        app.execute("CREATE TABLE notices (id INTEGER PRIMARY KEY, text TEXT)")
        app.commit()
        # Given one item rolled back with its application's rows, and one committed with them
        app.execute("INSERT INTO notices (text) VALUES ('dropped')")
        dropped = qm.enqueue({"n": 1}, "count", site="a.example", connection=app)
        app.rollback()
        app.execute("INSERT INTO notices (text) VALUES ('kept')")
        kept = qm.enqueue({"n": 2}, "count", site="a.example", connection=app)
        app.commit()
        app.close()
    # When a daemon runs
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: record_file.exists() and record_file.read_text().strip(), what="the committed item's run")
        time.sleep(1.0)  # room for a wrong run
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0
    # Then only the committed item ran, with the id enqueue gave, and the outbox is empty
    runs = [json.loads(line) for line in record_file.read_text().splitlines()]
    assert [(r["id"], r["n"]) for r in runs] == [(kept, 2)]
    assert dropped != kept
    with sqlite3.connect(app_db) as check:
        assert check.execute("SELECT count(*) FROM statusq_outbox").fetchone() == (0,)
