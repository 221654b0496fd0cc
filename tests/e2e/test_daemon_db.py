"""``statusq daemon`` as a subprocess on SQLite and PostgreSQL, with a plugin from outside the repo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

import statusq
from tests.conftest import read_records, run_cli, start_daemon, wait_for

pytestmark = pytest.mark.e2e


def backlog(config: Path) -> dict[str, int]:
    result = run_cli("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    totals: dict[str, int] = json.loads(result.stdout)["totals"]
    return totals


def test_external_plugin_handles_1000_items_exactly_once(db_url, write_config, record_file) -> None:
    # Given 500 items from `statusq enqueue` and 500 from statusq.connect().enqueue, two sites
    config = write_config(db_url)
    lines = "\n".join(json.dumps({"n": n}) for n in range(500))
    cli = run_cli("enqueue", "--site", "a.example", "--lines", "count", "-", config=config, input=lines)
    assert cli.returncode == 0, cli.stderr
    assert "enqueued 500" in cli.stdout
    with statusq.connect(config) as qm:
        for n in range(500, 1000):
            qm.enqueue({"n": n}, "count", site="b.example")
    assert backlog(config)["ready"] == 1000

    # When the daemon runs until idle
    done = run_cli("daemon", "--idle-exit", "2", config=config, timeout=300)

    # Then every item was handled exactly once, and the queue is empty
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_records(record_file)
    assert sorted(r["n"] for r in records) == list(range(1000))
    assert {r["site"] for r in records if r["n"] < 500} == {"a.example"}
    assert {r["site"] for r in records if r["n"] >= 500} == {"b.example"}
    assert backlog(config) == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}


@pytest.mark.parametrize("action", ["false", "raise"])
def test_failing_item_is_retried_then_dead_lettered(db_url, write_config, record_file, action) -> None:
    # Given max_retries = 2 and a handler that fails this item every time
    config = write_config(db_url)
    with statusq.connect(config) as qm:
        bad = qm.enqueue({"n": 1, "action": action}, "count", site="s.example")
        qm.enqueue({"n": 2}, "count", site="s.example")

    done = run_cli("daemon", "--idle-exit", "2", config=config)

    # Then it ran 3 times, and is listed as dead with the reason; the other item was handled
    assert done.returncode == 0, done.stderr[-2000:]
    attempts = [r["attempt"] for r in read_records(record_file) if r["n"] == 1]
    assert attempts == [1, 2, 3]
    listing = run_cli("deadletters", "list", "--json", config=config)
    [letter] = json.loads(listing.stdout)
    reason = "handler returned False" if action == "false" else "ValueError: boom 1"
    assert letter["id"] == bad and letter["attempts"] == 3
    assert reason in letter["error"] and "gave up after 3 attempts" in letter["error"]
    table = run_cli("deadletters", "list", config=config).stdout
    assert bad in table and reason in table
    assert backlog(config)["dead"] == 1
    # And an operator can requeue it (fresh attempts) and purge it
    assert run_cli("deadletters", "retry", bad, config=config).returncode == 0
    assert backlog(config) == {"ready": 1, "delayed": 0, "in_flight": 0, "dead": 0}
    run_cli("daemon", "--idle-exit", "1", config=config)
    assert backlog(config)["dead"] == 1
    assert run_cli("deadletters", "purge", "--all", config=config).stdout.strip() == "purged 1 item(s)"
    assert backlog(config)["dead"] == 0


def test_two_daemons_on_one_database_never_handle_an_item_twice(db_url, write_config, record_file, tmp_path) -> None:
    # Given two daemons already running and competing on the same database
    config = write_config(db_url)
    logs = [tmp_path / "d1.log", tmp_path / "d2.log"]
    daemons = [start_daemon(config, "--idle-exit", "4", "--workers", "1", log=log) for log in logs]
    wait_for(lambda: all("worker ready" in log.read_text() for log in logs), what="both daemons ready")

    # When 400 slow-ish items arrive at once
    with statusq.connect(config) as qm:
        for n in range(400):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 0.005}, "count")
    codes = [d.wait(timeout=300) for d in daemons]

    # Then each item was handled once, and both daemons took part
    assert codes == [0, 0]
    records = read_records(record_file)
    handled = Counter(r["n"] for r in records)
    assert sorted(handled) == list(range(400))
    assert max(handled.values()) == 1, "an item was handled twice"
    assert len({r["pid"] for r in records}) == 2


def test_sigkilled_worker_loses_no_item(db_url, write_config, record_file, tmp_path) -> None:
    # Given a daemon in the middle of a long item, and a short claim timeout
    config = write_config(
        db_url, queue={"claim_timeout": "2s"}, daemon={"time_limit": "1s", "time_limit_grace": "0.5s"}
    )
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "action": "sleep", "seconds": 0.5}, "count")
    first = start_daemon(config, log=tmp_path / "first.log")
    wait_for(lambda: any(r["n"] == 1 for r in read_records(record_file)), what="item started")

    # When the whole daemon dies mid-item (power loss, an OOM kill of its cgroup): its worker is
    # SIGKILLed while its supervisor is stopped, so no one can release the claim, then the supervisor
    worker = next(r["pid"] for r in read_records(record_file) if r["n"] == 1)
    first.send_signal(signal.SIGSTOP)
    os.kill(worker, signal.SIGKILL)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert backlog(config)["in_flight"] == 1, "the item is still claimed by the dead worker"

    # Then a new daemon takes the item once the claim expires, as attempt 2
    done = run_cli("daemon", "--idle-exit", "4", config=config)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["attempt"] for r in read_records(record_file)] == [1, 2]
    assert backlog(config) == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_sigterm_finishes_the_item_in_hand_and_exits_0(db_url, write_config, record_file, tmp_path) -> None:
    config = write_config(db_url)
    with statusq.connect(config) as qm:
        for n in range(5):
            qm.enqueue({"n": n, "action": "sleep", "seconds": 1.0}, "count")
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "d.log")
    wait_for(lambda: len(read_records(record_file)) == 1, what="first item started")

    daemon.send_signal(signal.SIGTERM)

    assert daemon.wait(timeout=60) == 0
    started = read_records(record_file)
    assert [r["n"] for r in started] == [0]
    # the item in hand was finished and acked; the others wait, none in flight
    assert backlog(config) == {"ready": 4, "delayed": 0, "in_flight": 0, "dead": 0}


def test_worker_over_its_soft_memory_limit_exits_to_be_replaced(db_url, write_config, record_file) -> None:
    # Given a handler that keeps 30 MB per item and a 150 MB soft limit
    config = write_config(db_url, daemon={"soft_memory_limit": "150MB"})
    with statusq.connect(config) as qm:
        for n in range(20):
            qm.enqueue({"n": n, "action": "leak", "mb": 30}, "count")

    done = run_cli("daemon", "--workers", "1", "--idle-exit", "2", config=config)

    # Then the worker finishes and acks the item that crossed the limit, exits to be restarted,
    # and its supervisor replaces it: every item handled once
    assert done.returncode == 0, done.stderr[-2000:]
    assert "soft memory limit exceeded" in done.stderr
    assert "over its soft memory limit: replacing it" in done.stderr
    assert sorted(r["n"] for r in read_records(record_file)) == list(range(20))
    assert backlog(config) == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}


def test_item_past_the_time_limit_is_stopped_and_dead_lettered(db_url, write_config, record_file) -> None:
    config = write_config(db_url, daemon={"time_limit": "0.5s"})
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "action": "sleep", "seconds": 30}, "count")
        qm.enqueue({"n": 2}, "count")

    done = run_cli("daemon", "--idle-exit", "2", config=config)

    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["attempt"] for r in read_records(record_file) if r["n"] == 1] == [1, 2, 3]
    assert [r["n"] for r in read_records(record_file)].count(2) == 1
    [letter] = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert "time limit of 0.5s" in letter["error"]


def test_hostile_xml_is_dead_lettered_and_the_worker_keeps_going(db_url, write_config, record_file, tmp_path) -> None:
    # Given an XXE body slipped into the queue past the producer-side check (a foreign writer)
    from sqlalchemy import insert

    from statusq.queues.db.engine import make_engine
    from statusq.queues.db.schema import items, metadata

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]><l>&d;</l>'
    )
    config = write_config(db_url)
    engine = make_engine(db_url)
    metadata.create_all(engine)
    now = time.time()
    with engine.begin() as conn:
        for body in (xxe, laughs):
            conn.execute(
                insert(items).values(
                    site="x.example",
                    transport="count",
                    priority=4,
                    content_type="application/xml",
                    body=body.encode(),
                    headers="{}",
                    attempts=0,
                    enqueued_at=now,
                    available_at=now,
                )
            )
    engine.dispose()
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 3}, "count", site="x.example")

    done = run_cli("daemon", "--idle-exit", "2", config=config)

    assert done.returncode == 0
    assert [r["n"] for r in read_records(record_file)] == [3], "the handler never saw hostile XML"
    letters = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert len(letters) == 2
    assert all("entities" in d["error"] and d["attempts"] == 1 for d in letters)
    assert "TOP-SECRET" not in done.stderr + json.dumps(letters)


def test_item_for_a_transport_nobody_handles_is_dead_lettered(db_url, write_config, record_file) -> None:
    config = write_config(db_url)
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1}, "nobody-handles-this")
    done = run_cli("daemon", "--idle-exit", "1", config=config)
    assert done.returncode == 0
    [letter] = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert letter["error"] == "no handler registered for transport 'nobody-handles-this'"


def test_site_settings_reach_the_handler_and_unknown_sites_are_refused(write_config, record_file, tmp_path) -> None:
    # Given require_file = true and one site file with settings for the plugin
    sites = tmp_path / "sites"
    sites.mkdir()
    (sites / "known.example.toml").write_text('[settings.counter]\ngreeting = "hi known"\n')
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", "[sites]\nrequire_file = true\n")
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1}, "count", site="known.example")
        qm.enqueue({"n": 2}, "count", site="unknown.example")
    run_cli("daemon", "--idle-exit", "1", config=config)
    [record] = read_records(record_file)
    assert (record["n"], record["greeting"]) == (1, "hi known")
    [letter] = json.loads(run_cli("deadletters", "list", "--json", config=config).stdout)
    assert letter["site"] == "unknown.example" and "unknown site" in letter["error"]


def test_queuedaemon_script_is_the_daemon_command(write_config, record_file, tmp_path) -> None:
    import sys

    from tests.conftest import ROOT

    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 7}, "count")
    script = [sys.executable, str(ROOT / "scripts" / "queuedaemon.py"), "--config", str(config)]
    done = subprocess.run([*script, "--idle-exit", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [r["n"] for r in read_records(record_file)] == [7]
