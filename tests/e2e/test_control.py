"""Control on every backend, durable (issue #17), the daemon a subprocess.

On SQLite and PostgreSQL ``statusq control`` travels in a table of the queue's database; forged,
stale and replayed commands there are refused and logged, as on STOMP.  A ``remove-site`` is
also state in the shared store: a worker SIGKILLed and respawned, or a daemon that was stopped
when the command went out (on a broker, whose topic it could not have heard), still dead-letters
the removed site's items; ``update-site`` brings the site back.  A running worker that hears no
command at all follows a removal at its next ``site_recheck``.

``site_recheck = "1h"`` (but in the last test): no worker re-reads the removals on its clock, so
what a respawned or newly started worker honours it read at its start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert

import statusq
from statusq.commands import sign
from statusq.queues.db.database import Database
from statusq.queues.db.removals import RemovalStore
from statusq.queues.db.schema import control
from statusq.state import RunDir
from tests.conftest import read_records, run_cli, start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

SECRET = "db-control-test-secret-0123"
GONE, KEPT = "gone.example", "kept.example"
QUEUE = {"site_recheck": "1h", "max_retries": 0}
DAEMON = {"spawn_delay": "50ms"}


def cli_ok(config: Path, *args: str) -> str:
    result = run_cli(*args, config=config)
    assert result.returncode == 0, result.stderr
    return result.stdout


def ran(record_file: Path, site: str) -> list[int]:
    return [r["n"] for r in read_records(record_file) if r["site"] == site]


def dead(config: Path) -> list[str]:
    """The dead letters' reasons (in-process, as `statusq deadletters list` reads them)."""
    with statusq.connect(config) as qm:
        return [letter.error for letter in qm.dead_letters()]


def worker_pids(config: Path, daemon: subprocess.Popen[str]) -> list[int]:
    """The daemon's ready workers, from the state files it keeps under var_dir/run."""
    found = []
    for worker in RunDir(config.parent / "var", daemon.pid).workers():
        try:
            os.kill(worker.pid, 0)
        except ProcessLookupError:
            continue
        if worker.state in ("idle", "busy"):
            found.append(worker.pid)
    return found


def enqueue(config: Path, n: int) -> None:
    """One item for the removed site, then one for another: once the other's has run, the
    removed site's was taken before it (one worker, FIFO) and settled."""
    with statusq.connect(config) as qm:
        qm.enqueue({"n": n}, "count", site=GONE)
        qm.enqueue({"n": n}, "count", site=KEPT)


def forge(url: str, rows: list[tuple[str, dict[str, str]]]) -> None:
    """Commands written straight into the control table, as someone who can write it could."""
    db = Database(url, 30)
    try:
        with db.engine.begin() as conn:
            for text, headers in rows:
                conn.execute(insert(control).values(command=text, headers=json.dumps(headers), created=time.time()))
    finally:
        db.close()


def test_on_the_database_backend_control_is_signed_applied_and_survives_a_killed_worker(
    db_url: str, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a daemon on SQLite or PostgreSQL whose control table needs signed commands
    extra = f'[queue.db]\ncontrol_secret = "{SECRET}"\ncontrol_poll = "200ms"\n'
    config = write_config(db_url, extra, queue=QUEUE, daemon=DAEMON)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", log=log)
    wait_for(lambda: len(worker_pids(config, daemon)) == 1, what="the worker ready")

    # When forged, stale and replayed commands are written to the control table: unsigned,
    # signed with another secret, signed an hour ago, a captured command sent twice, and a
    # well-signed unknown command
    remove = f"remove-site {GONE}"
    captured = sign(f"update-site {GONE}", SECRET)
    forge(
        db_url,
        [
            (remove, {}),
            (remove, sign(remove, "not-the-secret-but-long")),
            (remove, sign(remove, SECRET, now=time.time() - 3600)),
            (f"update-site {GONE}", captured),  # the original: applied
            (f"update-site {GONE}", captured),  # its replay
            ("format-disk", sign("format-disk", SECRET)),
        ],
    )

    # Then each is refused and logged with its reason, and nothing changes: the site is served
    wait_for(lambda: log.read_text().count("control message ignored") >= 5, what="bad commands ignored")
    ignored = [line for line in log.read_text().splitlines() if "control message ignored" in line]
    for reason in ("unsigned", "wrong signature", "stale", "replayed", "unknown control command"):
        assert any(reason in line for line in ignored), reason
    assert log.read_text().count(f"control: update-site {GONE}") == 1, "the original applied, not its replay"
    assert "control: remove-site" not in log.read_text()
    enqueue(config, 1)
    wait_for(lambda: ran(record_file, KEPT) == [1], what="the first items")
    assert ran(record_file, GONE) == [1]

    # When the site is removed with `statusq control`
    assert cli_ok(config, "control", "remove-site", GONE).startswith("sent:")
    wait_for(lambda: f"control: remove-site {GONE}" in log.read_text(), what="the removal applied")
    enqueue(config, 2)

    # Then its items are dead-lettered with that reason, not run; the other site's run
    wait_for(lambda: ran(record_file, KEPT) == [1, 2], what="the other site's item")
    assert ran(record_file, GONE) == [1]
    assert ["was removed" in error for error in dead(config)] == [True]

    # When the worker is SIGKILLed, and its supervisor respawns it
    [killed] = worker_pids(config, daemon)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: [p for p in worker_pids(config, daemon) if p != killed], what="a respawned worker")
    enqueue(config, 3)

    # Then the respawned worker still honours the removal (it read the shared store at start)
    wait_for(lambda: ran(record_file, KEPT) == [1, 2, 3], what="the respawned worker's item")
    assert ran(record_file, GONE) == [1]
    assert len(dead(config)) == 2

    # When the site is brought back, Then its items run again
    cli_ok(config, "control", "update-site", GONE)
    wait_for(lambda: log.read_text().count(f"control: update-site {GONE}") == 2, what="the update applied")
    enqueue(config, 4)
    wait_for(lambda: ran(record_file, GONE) == [1, 4], what="the site's item after update-site")
    daemon.terminate()
    assert daemon.wait(timeout=60) == 0


@pytest.mark.parametrize("flavor", ["activemq", "rabbitmq"])
def test_on_a_broker_a_removal_sent_while_a_daemon_was_stopped_is_honoured_when_it_starts(
    flavor: str, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given one daemon running on the broker, and a second one not started yet
    broker = make_broker(flavor)
    queue = {"subsystem": "stomp", **QUEUE}
    config = write_config(f"sqlite:///{tmp_path / 'shared.sqlite'}", stomp_toml(broker), queue=queue, daemon=DAEMON)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_daemon(config, "--workers", "1", log=first_log)
    wait_for(lambda: len(worker_pids(config, first)) == 1, what="the first daemon ready")

    # When a site is removed: the running daemon hears it on the topic; the other cannot
    assert cli_ok(config, "control", "remove-site", GONE).startswith("sent:")
    wait_for(lambda: f"control: remove-site {GONE}" in first_log.read_text(), what="the removal applied")

    # And the second daemon starts, and the first stops: only the second takes items
    second = start_daemon(config, "--workers", "1", log=second_log)
    wait_for(lambda: len(worker_pids(config, second)) == 1, what="the second daemon ready")
    first.terminate()
    assert first.wait(timeout=60) == 0
    enqueue(config, 1)

    # Then the second daemon dead-letters the removed site's item, and runs the other's
    wait_for(lambda: ran(record_file, KEPT) == [1], timeout=90, what="the other site's item")
    assert ran(record_file, GONE) == []
    wait_for(lambda: len(dead(config)) == 1, what="the removed site's item dead-lettered")
    assert "was removed" in dead(config)[0]
    assert f"control: remove-site {GONE}" not in second_log.read_text()

    # When the site is brought back, Then its items run again
    cli_ok(config, "control", "update-site", GONE)
    wait_for(lambda: f"control: update-site {GONE}" in second_log.read_text(), what="the update applied")
    enqueue(config, 2)
    wait_for(lambda: ran(record_file, GONE) == [2], timeout=90, what="the site's item after update-site")
    second.terminate()
    assert second.wait(timeout=60) == 0


def test_a_running_worker_that_hears_no_command_follows_a_removal_from_the_store(
    write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    # Given a daemon on ActiveMQ with no control channel at all (so it can hear no command, as a
    # worker reconnecting while the topic carried one), re-reading the removals every 300 ms
    broker = make_broker("activemq")
    queue = {"subsystem": "stomp", "max_retries": 0, "site_recheck": "300ms"}
    config = write_config(
        f"sqlite:///{tmp_path / 'shared.sqlite'}", stomp_toml(broker, control_channel=""), queue=queue
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, "--workers", "1", log=log)
    wait_for(lambda: len(worker_pids(config, daemon)) == 1, what="the worker ready")

    # When a site is removed: there is nothing to broadcast on, so it is only stored, and said so
    assert "stored: remove-site" in cli_ok(config, "control", "remove-site", GONE)
    store = RemovalStore.open(f"sqlite:///{tmp_path / 'shared.sqlite'}")
    try:
        assert set(store.list()) == {GONE}
    finally:
        store.close()

    # Then the running worker follows it at its next re-read: the site's items are dead-lettered
    wait_for(lambda: f"removed sites now: {GONE}" in log.read_text(), what="the worker's re-read")
    assert "control: remove-site" not in log.read_text()
    enqueue(config, 1)
    wait_for(lambda: ran(record_file, KEPT) == [1], timeout=90, what="the other site's item")
    assert ran(record_file, GONE) == []
    wait_for(lambda: len(dead(config)) == 1, what="the removed site's item dead-lettered")
    assert "was removed" in dead(config)[0]

    # And a command that is not a site's still needs a channel
    assert run_cli("control", "reload", config=config).returncode == os.EX_UNAVAILABLE
    daemon.terminate()
    assert daemon.wait(timeout=60) == 0
