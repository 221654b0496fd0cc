"""XMPP end to end: the xmpp group's worker as a subprocess, against the suite's real Prosody.

Each test registers its own accounts (uuid-named), so tests never see each other's messages.
The users are real XMPP clients (:mod:`tests.xmpp`); what the daemon reports about its
connections is read from ``var/xmpp-status.json``, which it writes from what the server answered.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import statusq
import statusq.xmpp
from statusq.config import load_config
from tests.conftest import ROOT, STATUSQ, read_records, wait_for
from tests.xmpp import Account, ChatUser, prosody, register, require_prosody

pytestmark = pytest.mark.e2e

#: Until statusq.worker wires the XMPP managers in, the worker is built by a test-only script.
WIRED = "xmpp_managers" in (ROOT / "statusq" / "worker.py").read_text()
EMPTY = {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
PROSODY_PID = Path(os.environ.get("STATUSQ_SERVERS_DIR", "/var/tmp/statusq-servers")) / "prosody" / "pid"

RECORDER = '''
"""Records the xmppin items it handles, one JSON line each (TEST_RECORD)."""
import json, os
import statusq.xmpp
from statusq.config import load_config
from statusq import QueueHandler

class Recorder(QueueHandler):
    def handle(self, item):
        line = json.dumps({"site": item.site, **item.payload}) + "\\n"
        fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

def register(api):
    statusq.xmpp.register(api)
    api.register_handler("xmppin", Recorder, group="xmpp")
'''


class Deployment:
    """A config, its sites, and the XMPP daemon on it; stopped (and its users closed) at the end."""

    def __init__(self, tmp_path: Path, record_file: Path) -> None:
        self.dir = tmp_path
        self.record_file = record_file
        self.config = tmp_path / "statusq.toml"
        self.log = tmp_path / "daemon.log"
        self.daemon: subprocess.Popen[str] | None = None
        self.users: list[ChatUser] = []
        plugins = tmp_path / "test-plugins"
        plugins.mkdir()
        (plugins / "recorder.py").write_text(RECORDER)
        (tmp_path / "sites").mkdir()

    def configure(
        self,
        *,
        db_url: str | None = None,
        subsystem: str = "db",
        plugins: tuple[str, ...] = ("recorder",),
        extra: str = "",
    ) -> Path:
        queue = {
            "subsystem": subsystem,
            "db_url": db_url or f"sqlite:///{self.dir / 'queue.sqlite'}",
            "max_retries": 40,  # enough to outlast a Prosody restart at these delays
            "retry_delay": "50ms",
            "retry_delay_max": "500ms",
            "claim_timeout": "60s",
        }
        lines = [f"{k} = {json.dumps(v)}" for k, v in queue.items()]
        self.config.write_text(
            'var_dir = "var"\n[queue]\n' + "\n".join(lines) + "\n" + textwrap.dedent(extra) + "\n"
            '[daemon]\ntime_limit = "20s"\n'
            f'[plugins]\npaths = ["test-plugins", "{ROOT / "plugins"}"]\nenabled = {json.dumps(list(plugins))}\n'
        )
        return self.config

    def site(self, name: str, bot: Account, xmppbot: dict[str, Any] | None = None, **xmpp: Any) -> None:
        settings = {
            "jid": bot.jid,
            "password": bot.password,
            "server": "127.0.0.1:5222",
            "tls": "none",
            "reconnect_delay": "100ms",
            "reconnect_delay_max": "1s",
            "connect_timeout": "5s",
            "send_timeout": "5s",
            **xmpp,
        }
        text = "[settings.xmpp]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        if xmppbot is not None:
            text += "[settings.xmppbot]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in xmppbot.items())
        (self.dir / "sites" / f"{name}.toml").write_text(text)

    def start(self, *groups: str, concurrency: int = 1) -> None:
        flags = [arg for group in groups or ("xmpp",) for arg in ("--group", group)]
        flags += ["--concurrency", str(concurrency)] if concurrency > 1 else []
        if WIRED:
            argv = [*STATUSQ, "--config", str(self.config), "daemon", "--workers", "1", *flags]
        else:
            argv = [sys.executable, "-m", "tests.e2e.xmpp_worker", "--config", str(self.config), *flags]
        out = self.log.open("w")
        self.daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=os.environ)
        out.close()

    def stop(self) -> int | None:
        daemon, self.daemon = self.daemon, None
        if daemon is None:
            return None
        daemon.send_signal(signal.SIGTERM)
        try:
            return daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
            raise

    def user(self, account: Account) -> ChatUser:
        user = ChatUser(account)
        self.users.append(user)
        return user.connect()

    def close(self) -> None:
        for user in self.users:
            user.close()
        self.stop()

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 30) -> None:
        try:
            wait_for(predicate, timeout=timeout, what=what)
        except AssertionError as exc:
            tail = self.log.read_text()[-3000:] if self.log.exists() else "(no log)"
            raise AssertionError(f"{exc}\n--- daemon log (tail) ---\n{tail}") from None

    def status(self) -> dict[str, Any]:
        path = self.dir / "var" / "xmpp-status.json"
        try:
            result: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {"sites": {}, "problems": {}}
        return result

    def link(self, site: str) -> dict[str, Any]:
        state: dict[str, Any] = self.status()["sites"].get(site, {})
        return state

    def wait_connected(self, site: str, connects: int = 1) -> None:
        def up() -> bool:
            state = self.link(site)
            return bool(state.get("connected")) and state.get("connects", 0) >= connects

        self.wait(up, f"site {site} connected (connection #{connects})")

    def backlog(self) -> dict[str, int]:
        totals = {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}
        with statusq.connect(self.config) as qm:
            for row in qm.backlog():
                for key in totals:
                    totals[key] += getattr(row, key)
        return totals

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.record_file)


@pytest.fixture
def deployment(tmp_path: Path, record_file: Path) -> Iterator[Deployment]:
    require_prosody()
    deployment = Deployment(tmp_path, record_file)
    try:
        yield deployment
    finally:
        deployment.close()


def test_a_message_queued_for_a_user_arrives_from_its_sites_jid(deployment: Deployment) -> None:
    # Given two sites, each with a bot account of its own, served by one XMPP worker
    bot_a, bot_b, alice = register("bota"), register("botb"), register("alice")
    config = deployment.configure()
    deployment.site("a.example", bot_a)
    deployment.site("b.example", bot_b)
    deployment.start()
    deployment.wait_connected("a.example")
    deployment.wait_connected("b.example")
    user = deployment.user(alice)

    # When each site queues a message for alice
    tag = uuid.uuid4().hex[:8]
    with statusq.connect(config) as qm:
        statusq.xmpp.send(qm, "a.example", alice.jid, f"from a {tag}")
        statusq.xmpp.send(qm, "b.example", alice.jid, f"from b {tag}")

    # Then both arrive, each from its own site's JID, and the queue is empty
    got_a = user.wait_message(lambda m: m.body == f"from a {tag}", what="from a.example")
    got_b = user.wait_message(lambda m: m.body == f"from b {tag}", what="from b.example")
    assert (got_a.sender, got_b.sender) == (bot_a.jid, bot_b.jid)
    deployment.wait(
        lambda: deployment.backlog() == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}, "empty queue"
    )


def test_handlers_on_eight_threads_send_every_message_once_from_the_right_site(deployment: Deployment) -> None:
    # Given two sites served by one XMPP worker that runs eight items at once on its threads
    bot_a, bot_b, alice = register("bota"), register("botb"), register("alice")
    config = deployment.configure()
    deployment.site("a.example", bot_a)
    deployment.site("b.example", bot_b)
    deployment.start(concurrency=8)
    deployment.wait_connected("a.example")
    deployment.wait_connected("b.example")
    user = deployment.user(alice)

    # When 40 messages, the two sites interleaved, and 8 confirmation requests are queued at once
    tag = uuid.uuid4().hex[:8]
    sent = {f"{site} {n} {tag}": site for n in range(20) for site in ("a.example", "b.example")}
    with statusq.connect(config) as qm:
        for body, site in sent.items():
            statusq.xmpp.send(qm, site, alice.jid, body)
        for n in range(8):
            statusq.xmpp.request_confirmation(qm, ("a.example", "b.example")[n % 2], alice.jid)

    # Then each message arrives once, from its own site's JID, and 8 codes arrive
    got: dict[str, list[str]] = {}
    codes = 0
    while sum(len(v) for v in got.values()) < len(sent) or codes < 8:
        message = user.wait_message(lambda m: tag in m.body or "confirm " in m.body, what="the 48 messages")
        if tag in message.body:
            got.setdefault(message.body, []).append(message.sender)
        else:
            codes += 1
    assert {body: senders for body, senders in got.items()} == {
        body: [(bot_a if site == "a.example" else bot_b).jid] for body, site in sent.items()
    }
    deployment.wait(lambda: deployment.backlog() == EMPTY, "empty queue, nothing dead-lettered")
    assert "Traceback" not in deployment.log.read_text()


def test_a_users_message_reaches_the_xmppin_handler(deployment: Deployment) -> None:
    # Given a site's bot connected and a user online
    bot, bob = register("bot"), register("bob")
    deployment.configure()
    deployment.site("chat.example", bot)
    deployment.start()
    deployment.wait_connected("chat.example")
    user = deployment.user(bob)

    # When the user writes to the site's JID
    body = f"hello there {uuid.uuid4().hex[:8]}"
    user.send(bot.jid, body)

    # Then an xmppin item carried sender, body and site to the plugin's handler
    deployment.wait(lambda: any(r["body"] == body for r in deployment.records()), "the xmppin item")
    [record] = [r for r in deployment.records() if r["body"] == body]
    assert record["site"] == "chat.example"
    assert record["sender"] == bob.jid
    assert record["from"] == f"{bob.jid}/test"
    assert record["to"] == bot.jid


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq"])
def test_confirmation_round_trip(deployment: Deployment, backend: str, request: pytest.FixtureRequest) -> None:
    # Given a site's bot, a user online, and the queue on SQLite, PostgreSQL or ActiveMQ (STOMP)
    bot, carol = register("bot"), register("carol")
    if backend == "activemq":
        from tests.stomp import make_broker, stomp_toml

        config = deployment.configure(subsystem="stomp", extra=stomp_toml(make_broker("activemq")))
    else:
        url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
        config = deployment.configure(db_url=url)
    deployment.site("shop.example", bot)
    deployment.start()
    deployment.wait_connected("shop.example")
    user = deployment.user(carol)
    status: Callable[[], Any] = lambda: statusq.xmpp.confirmation_status(  # noqa: E731
        load_config(config), "shop.example", carol.jid
    )

    # When the application asks to confirm the user's address
    with statusq.connect(config) as qm:
        statusq.xmpp.request_confirmation(qm, "shop.example", carol.jid, user="user-42")

    # Then a code arrives; the address is pending, not confirmed
    offer = user.wait_message(lambda m: "confirm" in m.body, what="with the code")
    assert offer.sender == bot.jid
    code = re.search(r'confirm ([A-Z0-9]{8})"', offer.body)
    assert code is not None, offer.body
    pending = status()
    assert pending is not None and pending.pending and not pending.confirmed

    # When the user replies with a wrong code, it is refused and nothing is confirmed
    user.send(bot.jid, "confirm WRONG234")
    answer = user.wait_message(lambda m: m.sender == bot.jid, what="answering the wrong code")
    assert answer.body.startswith("Error: wrong confirmation code")
    assert not status().confirmed

    # When the user replies with the right code (typed in lower case, with a space)
    typed = code.group(1).lower()
    user.send(bot.jid, f"Confirm {typed[:4]} {typed[4:]}")

    # Then the address is confirmed in the database, for the application's user
    answer = user.wait_message(lambda m: m.sender == bot.jid, what="answering the right code")
    assert answer.body.startswith("Confirmed:"), answer.body
    confirmed = status()
    assert confirmed.confirmed and not confirmed.pending and confirmed.user_ref == "user-42"
    # And the commands were answered by the worker, never passed on as xmppin items
    user.send(bot.jid, "barrier")
    deployment.wait(lambda: any(r["body"] == "barrier" for r in deployment.records()), "the barrier message")
    assert [r["body"] for r in deployment.records()] == ["barrier"]


def test_an_expired_code_is_refused(deployment: Deployment) -> None:
    # Given codes valid for one second
    bot, dave = register("bot"), register("dave")
    config = deployment.configure()
    deployment.site("brief.example", bot, confirm_ttl="1s")
    deployment.start()
    deployment.wait_connected("brief.example")
    user = deployment.user(dave)
    with statusq.connect(config) as qm:
        statusq.xmpp.request_confirmation(qm, "brief.example", dave.jid)
    offer = user.wait_message(lambda m: "confirm" in m.body, what="with the code")
    code = re.search(r'confirm ([A-Z0-9]{8})"', offer.body)
    assert code is not None and "1 second" in offer.body

    # When the right code comes back after it expired (as the database's clock says)
    loaded = load_config(config)
    expires_at = statusq.xmpp.confirmation_status(loaded, "brief.example", dave.jid).expires_at
    deployment.wait(lambda: time.time() > expires_at + 0.1, "the code to expire")
    user.send(bot.jid, f"confirm {code.group(1)}")

    # Then it is refused, and the address stays unconfirmed
    answer = user.wait_message(lambda m: m.sender == bot.jid, what="answering the expired code")
    assert "expired" in answer.body
    assert not statusq.xmpp.confirmation_status(loaded, "brief.example", dave.jid).confirmed


@pytest.mark.serial  # freezes the Prosody every XMPP test uses
def test_pings_are_answered_and_a_server_that_stops_answering_is_left(deployment: Deployment) -> None:
    # Given a ping every 300ms, answered within 1s or the connection is given up
    bot = register("bot")
    deployment.configure()
    deployment.site("ping.example", bot, ping_interval="300ms", ping_timeout="1s", connect_timeout="2s")
    deployment.start()
    deployment.wait_connected("ping.example")

    # Then the server answers ping after ping (counted only when its answer came)
    deployment.wait(lambda: deployment.link("ping.example").get("pings", 0) >= 3, "three answered pings")
    assert deployment.link("ping.example")["last_rtt_ms"] > 0
    if not PROSODY_PID.exists():
        pytest.skip(f"Prosody is not the suite's own ({PROSODY_PID} missing): cannot freeze it")

    # When the server freezes (SIGSTOP: its TCP connections stay open but nothing answers)
    pid = int(PROSODY_PID.read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        # Then the unanswered ping gives the connection up
        deployment.wait(lambda: not deployment.link("ping.example").get("connected"), "the link given up")
        assert "ping" in deployment.link("ping.example")["last_error"]
    finally:
        os.kill(pid, signal.SIGCONT)

    # And once the server answers again, the worker logs in anew and pings on
    deployment.wait_connected("ping.example", connects=2)
    pings = deployment.link("ping.example")["pings"]
    deployment.wait(lambda: deployment.link("ping.example")["pings"] > pings, "pings on the new connection")


@pytest.mark.serial  # stops the Prosody every XMPP test uses
def test_prosody_restart_mid_run_loses_no_message(deployment: Deployment) -> None:
    # Given a connected worker whose messages reach a user, and a send that gives up quickly
    # when disconnected (so items are retried while the server is down)
    bot, erin = register("bot"), register("erin")
    config = deployment.configure()
    deployment.site("news.example", bot, send_timeout="300ms")
    deployment.start()
    deployment.wait_connected("news.example")
    user = deployment.user(erin)
    with statusq.connect(config) as qm:
        for n in range(5):
            statusq.xmpp.send(qm, "news.example", erin.jid, f"before {n}")
    for n in range(5):
        user.wait_message(lambda m, n=n: m.body == f"before {n}", what=f"'before {n}'")

    # When Prosody stops, messages are queued while it is down, and it starts again
    user.close()
    try:
        prosody("stop")
        with statusq.connect(config) as qm:
            for n in range(10):
                statusq.xmpp.send(qm, "news.example", erin.jid, f"during {n}")
        deployment.wait(lambda: "retry site=news.example" in deployment.log.read_text(), "a retry while down")
    finally:
        prosody("ensure")

    # Then the worker reconnects and every message arrives (stored by the server for the offline
    # user, or live), and nothing is left in the queue or dead-lettered
    deployment.wait_connected("news.example", connects=2)
    user = deployment.user(erin)
    wanted = {f"during {n}" for n in range(10)}
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while seen < wanted and time.monotonic() < deadline:
        seen.add(user.wait_message(lambda m: m.body.startswith("during"), timeout=60, what="'during N'").body)
    assert seen == wanted
    deployment.wait(
        lambda: deployment.backlog() == {"ready": 0, "delayed": 0, "in_flight": 0, "dead": 0}, "empty queue"
    )
    assert "connection lost" in deployment.log.read_text()


def test_xmppbot_echoes_and_notifies(deployment: Deployment) -> None:
    # Given the bundled xmppbot plugin, the xmpp and main groups in one worker, and a site that
    # sends its notifications to frank
    bot, frank = register("bot"), register("frank")
    config = deployment.configure(plugins=("xmppbot",))
    deployment.site("bot.example", bot, xmppbot={"echo_prefix": "echo: ", "notify": [frank.jid]})
    deployment.start("xmpp", "main")
    deployment.wait_connected("bot.example")
    user = deployment.user(frank)

    # When frank writes to the bot, it answers
    user.send(bot.jid, "hi bot")
    assert user.wait_message(lambda m: m.sender == bot.jid, what="the echo").body == "echo: hi bot"
    user.send(bot.jid, "help")
    assert "echo bot" in user.wait_message(lambda m: m.sender == bot.jid, what="the help").body

    # When a notify item is handled, frank is told
    with statusq.connect(config) as qm:
        item = qm.enqueue({"text": "order 7 shipped"}, "notify", site="bot.example")
    told = user.wait_message(lambda m: "order 7" in m.body, what="the notification")
    assert told.body == f"[bot.example] handled item {item}: order 7 shipped"
