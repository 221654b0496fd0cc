"""StompQueueManager end to end: the daemon as a subprocess, on real ActiveMQ and RabbitMQ."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import statusq
from statusq.commands import sign
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import Broker, drain, make_broker, raw_connection, stomp_toml, work_queue_headers

pytestmark = pytest.mark.e2e

SECRET = "stomp-test-control-secret"


@pytest.fixture(params=["activemq", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return make_broker(request.param)


@pytest.fixture
def stomp_config(write_config: Callable[..., Path], broker: Broker, record_file: Path) -> Callable[..., Path]:
    def write(extra_toml: str = "", queue: dict[str, Any] | None = None, **stomp: Any) -> Path:
        return write_config(
            "sqlite:///unused.sqlite",
            stomp_toml(broker, **stomp) + extra_toml,
            queue={"subsystem": "stomp", **(queue or {})},
        )

    return write


def dead_letters(config: Path) -> list[dict[str, Any]]:
    result = run_cli("deadletters", "list", "--json", config=config)
    assert result.returncode == 0, result.stderr
    letters: list[dict[str, Any]] = json.loads(result.stdout)
    return letters


def test_three_sites_3000_items_each_handled_exactly_once(stomp_config, record_file) -> None:
    # Given 3,000 items for three sites on one group destination
    config = stomp_config()
    for site in ("a.example", "b.example", "c.example"):
        lines = "\n".join(json.dumps({"n": f"{site}-{n}"}) for n in range(1000))
        done = run_cli("enqueue", "--site", site, "--lines", "count", "-", config=config, input=lines)
        assert done.returncode == 0, done.stderr

    # When one worker runs until idle
    result = run_cli("daemon", "--idle-exit", "3", config=config, timeout=300)

    # Then each was handled exactly once, for its own site, and nothing is dead
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(record_file)
    counts = Counter(r["n"] for r in records)
    assert len(counts) == 3000 and set(counts.values()) == {1}
    assert all(r["n"].startswith(r["site"]) for r in records)
    assert dead_letters(config) == []


def test_failing_item_is_retried_then_dead_lettered_with_its_reason(stomp_config, record_file, broker) -> None:
    config = stomp_config()
    with statusq.connect(config) as qm:
        bad = qm.enqueue({"n": 1, "action": "raise"}, "count", site="s.example", headers={"x-app": "kept"})
        qm.enqueue({"n": 2}, "count", site="s.example")

    result = run_cli("daemon", "--idle-exit", "3", config=config)

    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["attempt"] for r in read_records(record_file) if r["n"] == 1] == [1, 2, 3]
    [letter] = dead_letters(config)
    assert letter["id"] == bad and letter["attempts"] == 3 and letter["site"] == "s.example"
    assert "ValueError: boom 1 (gave up after 3 attempts)" in letter["error"]
    # The raw dead-letter message carries the reason and origin in its headers
    [(headers, body)] = drain(broker.port, broker.physical(broker.basename + "dlq"))
    assert headers["statusq-error"] == letter["error"] and headers["statusq-attempts"] == "3"
    assert headers["statusq-original-destination"] == broker.group_queue("s.example")
    assert headers["x-app"] == "kept" and json.loads(body) == {"n": 1, "action": "raise"}


def test_dead_letters_can_be_requeued_and_purged(stomp_config, record_file) -> None:
    config = stomp_config(queue={"max_retries": 0})
    with statusq.connect(config) as qm:
        first = qm.enqueue({"n": 1, "action": "false"}, "count")
        second = qm.enqueue({"n": 2, "action": "false"}, "count")
    run_cli("daemon", "--idle-exit", "2", config=config)
    assert {d["id"] for d in dead_letters(config)} == {first, second}

    assert run_cli("deadletters", "retry", first, config=config).stdout.strip() == "requeued 1 item(s)"
    assert [d["id"] for d in dead_letters(config)] == [second]
    run_cli("daemon", "--idle-exit", "2", config=config)
    assert [r["attempt"] for r in read_records(record_file) if r["n"] == 1] == [1, 1], "fresh attempts"
    assert run_cli("deadletters", "purge", "--all", config=config).stdout.strip() == "purged 2 item(s)"
    assert dead_letters(config) == []


def test_the_backlog_is_unknown_and_asking_for_it_leaves_the_dead_letters_alone(stomp_config, broker) -> None:
    # Given a dead letter on the broker
    config = stomp_config(queue={"max_retries": 0})
    with statusq.connect(config) as qm:
        dead = qm.enqueue({"n": 1, "action": "false"}, "count", site="s.example")
    run_cli("daemon", "--idle-exit", "2", config=config)

    # When the backlog is asked for, by an application and by statusq status (as the web
    # overview does on every page load)
    with statusq.connect(config) as qm:
        started = time.monotonic()
        rows = qm.backlog()
        took = time.monotonic() - started
    status = run_cli("status", "--json", config=config)
    people = run_cli("status", config=config)

    # Then it is unknown, said at once (it used to read the whole dead-letter queue, then wait 1 s)
    assert rows is None and took < 0.5
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["backlog"] is None
    assert set(json.loads(status.stdout)["totals"].values()) == {None}
    assert people.stdout.startswith("backlog: ? (the stomp backend cannot count it cheaply")
    # And the dead letter was never consumed: still there, once, never redelivered
    [(headers, _)] = drain(broker.port, broker.physical(broker.basename + "dlq"))
    assert headers["statusq-id"] == dead
    assert headers.get("redelivered", "false") == "false"


def test_foreign_stomp_producer_on_breakout_destinations(stomp_config, record_file, broker) -> None:
    # Given a breakout destination, and a client that knows nothing of statusq
    config = stomp_config(breakout=["main/count/site.example"])
    conn = raw_connection(broker.port)
    breakout = broker.physical(broker.basename + "main/count/site.example")
    group = broker.physical(broker.basename + "main")
    # (On RabbitMQ it names the queue arguments statusq declares work queues with.)
    declared = {"persistent": "true", **work_queue_headers(broker)}
    conn.send(breakout, b'{"n": "foreign"}', headers={**declared, "content-type": "application/json"})
    conn.send(breakout, b"plain text, no content type", headers=declared)
    conn.send(group, b'{"n": "lost?"}', headers={**declared, "content-type": "application/json"})
    conn.disconnect()

    result = run_cli("daemon", "--idle-exit", "3", config=config)

    # Then transport and site come from the destination; the undeterminable one is parked
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(record_file)
    assert sorted(str(r["n"]) for r in records) == ["None", "foreign"]
    assert {r["site"] for r in records} == {"site.example"}
    [letter] = dead_letters(config)
    assert "cannot determine the item's transport" in letter["error"]


def test_openwire_producer_reaches_a_breakout_handler(write_config, record_file, tmp_path) -> None:
    import subprocess

    broker = make_broker("activemq")
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker, breakout=["main/count/ow.example"]),
        queue={"subsystem": "stomp"},
    )
    queue_name = (broker.basename + "main/count/ow.example").removeprefix("/queue/")
    subprocess.run(
        [
            "java",
            "-Dactivemq.home=/usr/share/activemq",
            "-Dactivemq.base=/usr/share/activemq",
            "-jar",
            "/usr/share/activemq/bin/activemq.jar",
            "producer",
            "--brokerUrl",
            "tcp://127.0.0.1:61616",
            "--destination",
            f"queue://{queue_name}",
            "--messageCount",
            "5",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    result = run_cli("daemon", "--idle-exit", "3", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_records(record_file)
    assert len(records) == 5 and {r["site"] for r in records} == {"ow.example"}
    assert dead_letters(config) == []


def test_poison_item_that_kills_its_worker_ends_in_the_dead_letter_queue(stomp_config, record_file) -> None:
    # Given max_retries = 1 and an item whose handler SIGKILLs its own worker
    config = stomp_config(queue={"max_retries": 1}, prefetch=1)
    with statusq.connect(config) as qm:
        poison = qm.enqueue({"n": 1, "action": "suicide"}, "count")
        qm.enqueue({"n": 2}, "count")

    # When workers keep dying on it (the broker redelivers; each redelivery is an attempt, and
    # the supervisor replaces each worker the item kills)
    result = run_cli("daemon", "--idle-exit", "3", config=config)

    # Then it ran twice (attempts 1 and 2), then was parked; the other item was handled
    assert result.returncode == 0, result.stderr[-3000:]
    attempts = [r["attempt"] for r in read_records(record_file) if r["n"] == 1]
    assert attempts == [1, 2]
    assert [r["n"] for r in read_records(record_file)].count(2) == 1
    [letter] = dead_letters(config)
    assert letter["id"] == poison and "never finished" in letter["error"]


def test_control_channel_adds_and_removes_sites_while_running(stomp_config, record_file, broker, tmp_path) -> None:
    # Given a daemon serving only sites with a file, and no file yet for new.example
    sites = tmp_path / "sites"
    sites.mkdir()
    config = stomp_config("[sites]\nrequire_file = true\n", control_secret=SECRET)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "2", log=log)
    try:
        wait_for(lambda: "worker ready" in log.read_text(), what="daemon ready")
        # When the site's file appears and update-site is broadcast
        (sites / "new.example.toml").write_text('[settings.counter]\ngreeting = "welcome"\n')
        assert run_cli("control", "update-site", "new.example", config=config).returncode == 0
        wait_for(lambda: "control: update-site new.example" in log.read_text(), what="update applied")
        with statusq.connect(config) as qm:
            qm.enqueue({"n": 1}, "count", site="new.example")
        wait_for(lambda: len(read_records(record_file)) == 1, what="item for the new site")
        assert read_records(record_file)[0]["greeting"] == "welcome"

        # Forged, stale and replayed commands are each refused and logged, and nothing changes:
        # unsigned, signed with another secret, signed too long ago, a captured command sent
        # again, and a well-signed unknown command
        remove = "remove-site new.example"
        wait_for(lambda: log.read_text().count("control: update-site") == 2, what="each worker's update")
        applied = log.read_text().count("control: update-site new.example")  # once per worker
        captured = sign("update-site new.example", SECRET)
        conn = raw_connection(broker.port)
        for text, headers in [
            (remove, {}),
            (remove, sign(remove, "not-the-secret-but-long")),
            (remove, sign(remove, SECRET, now=time.time() - 3600)),
            ("update-site new.example", captured),  # the original: applied
            ("update-site new.example", captured),  # its replay
            ("format-disk", sign("format-disk", SECRET)),
        ]:
            conn.send(broker.physical(broker.control), text.encode(), headers=headers)
        conn.disconnect()
        # Each of the two workers refuses all five: wait for both (one worker's five lines could
        # be in the log before the other's, and the check made after only five was a race)
        wait_for(lambda: log.read_text().count("control message ignored") >= 10, what="bad commands ignored")
        text = log.read_text()
        ignored = [line for line in text.splitlines() if "control message ignored" in line]
        for reason in ("unsigned", "wrong signature", "stale", "replayed", "unknown control command"):
            assert sum(reason in line for line in ignored) == 2, reason
        assert "control: remove-site" not in text
        assert text.count("control: update-site new.example") == 2 * applied, "the original applied, not its replay"
        with statusq.connect(config) as qm:
            qm.enqueue({"n": 3}, "count", site="new.example")
        wait_for(lambda: len(read_records(record_file)) == 2, what="the site still served")

        # And remove-site makes the site's items dead letters, with that reason
        assert run_cli("control", "remove-site", "new.example", config=config).returncode == 0
        wait_for(lambda: "control: remove-site new.example" in log.read_text(), what="remove applied")
        with statusq.connect(config) as qm:
            qm.enqueue({"n": 2}, "count", site="new.example")
        wait_for(lambda: "dead-lettered" in log.read_text(), what="item dead-lettered")
        assert [r["n"] for r in read_records(record_file)] == [1, 3]

        # And shutdown stops the daemon cleanly
        assert run_cli("control", "shutdown", config=config).returncode == 0
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
    [letter] = dead_letters(config)
    assert "was removed" in letter["error"]
    assert run_cli("control", "explode", config=config).returncode == 64


def test_a_flooded_site_does_not_hold_back_another_sites_item(stomp_config, record_file) -> None:
    # Given per-site breakouts, 3,000 items waiting for one site, then one for another
    config = stomp_config(breakout=["main/count/flood.example", "main/count/quiet.example"], prefetch=50)
    lines = "\n".join(json.dumps({"n": n}) for n in range(3000))
    assert (
        run_cli("enqueue", "--site", "flood.example", "--lines", "count", "-", config=config, input=lines).returncode
        == 0
    )
    assert run_cli("enqueue", "--site", "quiet.example", "count", '{"n": "quiet"}', config=config).returncode == 0

    run_cli("daemon", "--idle-exit", "3", config=config, timeout=300)

    # Then the quiet site's item ran within the first turns, not behind the backlog
    order = [r["n"] for r in read_records(record_file)]
    assert len(order) == 3001
    assert order.index("quiet") < 100, f"quiet item handled at position {order.index('quiet')}"


def test_slow_handler_keeps_the_connection_alive(stomp_config, record_file, tmp_path) -> None:
    # Given 1 s heartbeats both ways, and a handler busy for 5 s
    config = stomp_config(heartbeats=[1000, 1000])
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 1, "action": "sleep", "seconds": 5}, "count")
        qm.enqueue({"n": 2}, "count")
    result = run_cli("daemon", "--idle-exit", "2", "--workers", "1", config=config)
    # Then both were handled once, on one connection (no reconnect, no redelivery)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(r["n"] for r in read_records(record_file)) == [1, 2]
    assert result.stderr.count("consumer connected") == 1
    assert "redelivered" not in result.stderr


def test_hostile_xml_from_the_wire_is_dead_lettered(stomp_config, record_file, broker) -> None:
    config = stomp_config()
    conn = raw_connection(broker.port)
    xxe = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    conn.send(
        broker.physical(broker.basename + "main"),
        xxe,
        headers={
            "persistent": "true",
            "content-type": "application/xml",
            "statusq-transport": "count",
            **work_queue_headers(broker),
        },
    )
    conn.disconnect()
    with statusq.connect(config) as qm:
        qm.enqueue({"n": 2}, "count")
    result = run_cli("daemon", "--idle-exit", "2", config=config)
    assert result.returncode == 0
    assert [r["n"] for r in read_records(record_file)] == [2]
    [letter] = dead_letters(config)
    assert "entities" in letter["error"] and "root:" not in json.dumps(letter)
