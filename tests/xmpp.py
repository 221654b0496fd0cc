"""Real XMPP users for the tests, on the suite's Prosody (127.0.0.1:5222, VirtualHost localhost).

Every test registers accounts of its own (uuid-named) with ``scripts/servers/prosody.sh``, and
talks to the daemon as a user would: a slixmpp client on a loop thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import subprocess
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import require

ROOT = Path(__file__).resolve().parent.parent
PROSODY_SH = ROOT / "scripts" / "servers" / "prosody.sh"
HOST, PORT, DOMAIN = "127.0.0.1", 5222, "localhost"


def require_prosody() -> None:
    require(HOST, PORT, "Prosody (XMPP)")


def prosody(*args: str, timeout: float = 60) -> None:
    result = subprocess.run([str(PROSODY_SH), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"prosody.sh {' '.join(args)}: {result.stderr[-2000:]}"


@dataclass(frozen=True)
class Account:
    user: str
    password: str

    @property
    def jid(self) -> str:
        return f"{self.user}@{DOMAIN}"


def register(prefix: str) -> Account:
    """A fresh account, unique to this test."""
    account = Account(f"{prefix}-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex)
    prosody("register", account.user, account.password)
    return account


@dataclass(frozen=True)
class Received:
    sender: str  # bare JID
    body: str
    type: str


class ChatUser:
    """A user logged in to Prosody, collecting the messages it receives."""

    def __init__(self, account: Account, resource: str = "test") -> None:
        self.account = account
        self.resource = resource
        self.inbox: queue.Queue[Received] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"user {account.user}", daemon=True)
        self._thread.start()
        self._client: Any = None

    def _call(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self, timeout: float = 15) -> ChatUser:
        self._call(self._connect(timeout), timeout + 1)
        return self

    async def _connect(self, timeout: float) -> None:
        import slixmpp

        client = slixmpp.ClientXMPP(f"{self.account.jid}/{self.resource}", self.account.password)
        client.enable_direct_tls = False
        client.enable_starttls = False
        client.enable_plaintext = True
        client.plugin["feature_mechanisms"].unencrypted_scram = True
        client.register_plugin("xep_0030")
        client.register_plugin("xep_0199")
        started = self._loop.create_future()

        def on_start(_: Any) -> None:
            client.send_presence()  # also what makes the server hand over stored offline messages
            if not started.done():
                started.set_result(None)

        def on_message(msg: Any) -> None:
            if msg["type"] in ("chat", "normal") and msg["body"]:
                self.inbox.put(Received(str(msg["from"].bare), str(msg["body"]), str(msg["type"])))

        client.add_event_handler("session_start", on_start)
        client.add_event_handler("message", on_message)
        client.connect(HOST, PORT)
        try:
            await asyncio.wait_for(started, timeout)
        except TimeoutError:
            client.cancel_connection_attempt()
            client.abort()
            raise
        self._client = client

    def send(self, to: str, body: str) -> None:
        self._loop.call_soon_threadsafe(lambda: self._client.send_message(mto=to, mbody=body, mtype="chat"))

    def wait_message(self, predicate: Callable[[Received], bool], timeout: float = 20, what: str = "") -> Received:
        """The first message received that satisfies ``predicate``; those before it are dropped."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.account.jid}: no message {what} within {timeout}s")
            try:
                message = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if predicate(message):
                return message

    def close(self, timeout: float = 5) -> None:
        """Log out and end the thread; a second call does nothing."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown(), timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _shutdown(self) -> None:
        client = self._client
        if client is not None:
            client.cancel_connection_attempt()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(wait=1), 2)
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=1)
