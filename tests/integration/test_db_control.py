"""The database backend's control channel and the shared store's site removals (issue #17), on
SQLite and PostgreSQL, in-process: what each worker reads, when, and what a control manager
then does with the sites."""

from __future__ import annotations

import select
from collections.abc import Iterator
from pathlib import Path

import pytest

from statusq.commands import parse_command
from statusq.config import Config
from statusq.control import ControlActions, ControlManager
from statusq.defaults import DB_CONTROL_KEEP
from statusq.errors import QueueError
from statusq.queues.db.control import DESTINATION, DBControlChannel, send
from statusq.queues.db.database import Database
from statusq.queues.db.removals import RemovalStore
from statusq.removals import SiteRemovals
from statusq.sites import SiteTable

SECRET = "db-control-unit-secret-0123"


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, 30)
    yield database
    database.close()


def bodies(channel: DBControlChannel) -> list[bytes]:
    channel._due = 0.0  # as if its poll were due
    return [body for _, body in channel.take()]


def test_a_worker_reads_the_commands_sent_since_it_started_in_order_and_each_once(db: Database) -> None:
    # Given a command sent before the worker's channel existed
    send(db, "reload", None)
    channel = DBControlChannel(db, poll=3600)

    # When two are sent after
    send(db, "remove-site a.example", None)
    send(db, "update-site a.example", SECRET)

    # Then it reads those two, in order, once; the one before it started is not replayed
    taken = bodies(channel)
    assert taken == [b"remove-site a.example", b"update-site a.example"]
    assert bodies(channel) == []
    channel.close()


def test_a_command_read_from_the_table_carries_its_signature_and_the_tables_destination(db: Database) -> None:
    channel = DBControlChannel(db, poll=3600)
    send(db, "shutdown", SECRET)
    channel._due = 0.0
    [(headers, body)] = channel.take()
    assert headers["destination"] == DESTINATION and body == b"shutdown"
    assert {"statusq-signature", "statusq-timestamp", "statusq-nonce"} <= headers.keys()
    channel.close()


def test_a_sender_deletes_commands_older_than_an_hour(db: Database) -> None:
    send(db, "reload", None, now=1_000.0)
    send(db, "restart", None, now=1_000.0 + DB_CONTROL_KEEP + 1)
    assert bodies(DBControlChannel(db, since=0)) == [b"restart"]


def test_a_channel_waits_for_its_poll_and_a_notify_on_postgresql_cuts_the_wait(db: Database) -> None:
    # Given a channel that would poll only hourly
    channel = DBControlChannel(db, poll=3600)
    assert channel.timeout() > 3000 and channel.take() == []

    # When a command is sent
    send(db, "reload", None)

    # Then on PostgreSQL its descriptor wakes the loop and it reads now; on SQLite it waits
    if not db.is_postgres:
        assert channel.filenos() == [] and channel.take() == []
        return
    readable, _, _ = select.select(channel.filenos(), [], [], 10)
    assert readable
    channel.drain_wakeups()
    assert channel.timeout() == 0
    assert [body for _, body in channel.take()] == [b"reload"]
    channel.close()


# -- site removals: the store, and a worker's copy of it -----------------------------------------


@pytest.fixture
def sites(tmp_path: Path) -> SiteTable:
    folder = tmp_path / "sites"
    folder.mkdir()
    for name in ("a.example", "b.example"):
        (folder / f"{name}.toml").write_text("enabled = true\n")
    return SiteTable(Config.model_validate({"sites": {"dir": str(folder), "require_file": True}}))


class Flaky:
    """A removal store's ``list`` that fails while ``down``."""

    def __init__(self, store: RemovalStore) -> None:
        self.store = store
        self.down = False

    def __call__(self) -> set[str]:
        if self.down:
            raise QueueError("database is away")
        return set(self.store.list())


def test_a_workers_removals_follow_the_store_and_survive_a_reload_and_a_database_hiccup(
    db_url: str, sites: SiteTable
) -> None:
    store = RemovalStore.open(db_url)
    load = Flaky(store)
    now = [0.0]
    removals = SiteRemovals(load, sites, recheck=5.0, clock=lambda: now[0])

    # Given a site removed in the store before the worker started: read at boot
    store.remove("a.example")
    removals.read()
    assert sites.lookup("a.example").problem == "site 'a.example' was removed (remove-site)"
    assert sites.lookup("b.example").site is not None

    # When every site file is re-read (a `reload`), and the manager re-reads the store after it
    manager = ControlManager(
        None,
        sites,
        ControlActions(sites.reload_all, lambda: None, lambda: None),
        channel=None,
        secret=None,
        removals=removals,
    )
    sites.reload_all()
    removals.read()
    # Then the removed site stays removed
    assert sites.lookup("a.example").site is None

    # When the database is away, and commands arrive meanwhile
    load.down = True
    manager.apply(parse_command("remove-site b.example"))
    manager.apply(parse_command("update-site a.example"))
    removals.read()
    # Then the last set known, with the commands applied, holds
    assert sites.lookup("b.example").site is None and sites.lookup("a.example").site is not None

    # When it is back: the store is the truth again, at the next recheck
    load.down = False
    store.restore("a.example")
    store.remove("b.example")
    assert manager.timeout() == 5.0
    now[0] = 5.0
    assert manager.timeout() <= 0
    manager.poll()
    assert sites.removed == {"b.example"}
    store.close()
