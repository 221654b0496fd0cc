"""Connecting a :class:`~statusq.queues.stomp.link.StompLink`, and naming why a connect failed.

Apart from receiving, sending and receipts because a connect is a job of its own, with state of
its own: stomp.py's connect waits without a timeout and neither reconnects nor resubscribes after
a drop.  Here each connect builds a fresh stomp.py connection (trying the servers in order:
failover), waits for CONNECTED with a timeout, and on failure names the cause: the broker's
refusal (an ERROR frame: a wrong login, an unknown vhost), a hang-up before CONNECTED, or a port
that accepts and never answers.  A connection given up on or replaced is closed with its socket
and receiver thread, so reconnects never pile up threads.  Each connection has a generation
number, so an ack for a frame of an older connection is dropped (the broker redelivers that
frame anyway).  A mixin, not an object of its own: a connect replays the link's subscriptions,
forgets its old connection's refusals, and every other part of the link reads its generation.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import stomp
from stomp.exception import ConnectFailedException, StompException

from statusq.config import StompConfig
from statusq.errors import ConnectionClosed
from statusq.queues.stomp import frames
from statusq.queues.stomp.receipts import Countdown
from statusq.queues.stomp.subscriptions import Subscription
from statusq.wakeup import WakePipe

# The name these messages logged under before they left statusq.queues.stomp.link.
log = logging.getLogger("statusq.queues.stomp.link")


def _abandon(conn: Any) -> None:
    """Close a connection that never became ours (no DISCONNECT: it was never CONNECTED)."""
    with contextlib.suppress(Exception):
        conn.transport.running = False
        conn.transport.disconnect_socket()


def _server(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host, int(port)


class Connecting:
    """The connecting half of :class:`~statusq.queues.stomp.link.StompLink`."""

    # The link's own, set in its __init__ and its other mixins: what a connect reads and changes.
    config: StompConfig
    name: str
    flavor: str
    generation: int
    _conn: Any
    _write_lock: threading.Lock
    _wakeup: WakePipe
    _subscriptions: list[Subscription]
    _receipts: dict[str, threading.Event | Countdown]
    _wake: Callable[[], None]
    _tell_receipts: Callable[[], None]
    _forget_refusals: Callable[[], None]
    _refused_transaction: bool
    _send_subscribe: Callable[[Subscription], None]

    def _start_connecting(self) -> None:
        """Not connected yet."""
        self._connected = threading.Event()
        #: While connecting: the broker said something (CONNECTED, an ERROR, or hung up), and
        #: what it refused with.  So a failed connect names its cause instead of guessing one.
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._warned_type = False

    # -- the receiver thread's side: record and wake, never raise -------------------------------

    def on_connected(self, frame: Any) -> None:
        server = frame.headers.get("server", "")
        if self.config.flavor == "auto":
            self.flavor = "rabbitmq" if server.lower().startswith("rabbitmq") else "activemq"
            if self.flavor != "rabbitmq" and self.config.queue_type == "quorum" and not self._warned_type:
                self._warned_type = True  # once per link, not per reconnect
                log.warning(
                    '%s: [queue.stomp] queue_type = "quorum" ignored: %s is not RabbitMQ (queues are '
                    "declared as that broker declares them; x-queue-type is not sent)",
                    self.name,
                    server or "the broker",
                )
        self._connected.set()
        self._answered.set()

    def _connect_refused(self, message: str, detail: bytes) -> None:
        """An ERROR frame (:meth:`~statusq.queues.stomp.receipts.Receipts.on_error`): before
        CONNECTED, it is the refusal a failed connect names."""
        if not self._connected.is_set():
            self._refusal = f"{message} {detail.decode('utf-8', 'replace').strip()}".strip() or "an ERROR frame"
            self._answered.set()

    def on_disconnected(self) -> None:
        self._connected.clear()
        self._answered.set()
        for event in list(self._receipts.values()):
            event.set()  # waiters see the connection is gone
        self._wake()
        self._tell_receipts()

    def on_heartbeat_timeout(self) -> None:
        log.warning("heartbeat timeout on %s: the broker went quiet", self.name)

    # -- the owner's side -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        # Our own flag, kept by on_connected/on_disconnected: stomp.py's is_connected() costs a
        # getsockname() system call, and this is asked for every frame.
        return self._conn is not None and self._connected.is_set()

    def connect(self) -> None:
        """(Re)connect to the first server that answers, and replay every subscription."""
        with self._write_lock:
            self._drop()
            self.generation += 1
            self._forget_refusals()
        servers = [_server(s) for s in self.config.servers]
        conn = stomp.Connection12(
            servers,
            prefer_localhost=False,
            try_loopback_connect=False,
            reconnect_attempts_max=1,
            reconnect_sleep_initial=0.1,
            reconnect_sleep_max=1.0,
            heartbeats=tuple(self.config.heartbeats),
            vhost=self.config.vhost,
            auto_decode=False,
            timeout=self.config.receipt_timeout,
        )
        frames.install(conn)  # stomp.py's own frame reader if this version lacks the hook
        conn.set_listener("statusq", self)
        where = ", ".join(self.config.servers)
        self._answered.clear()
        self._refusal = None
        try:
            # wait=False: stomp.py's own wait has no timeout; ours (below) does.
            conn.connect(self.config.username, self.config.password, wait=False)
        except (ConnectFailedException, StompException, OSError) as exc:
            _abandon(conn)
            raise ConnectionClosed(
                f"cannot connect to {where}: nothing answers there (refused, or no route; {exc!r})"
            ) from None
        self._answered.wait(self.config.receipt_timeout)
        if not self._connected.is_set():
            failure = self._connect_failure(where)  # before closing: that reports a hang-up too
            _abandon(conn)
            raise ConnectionClosed(failure)
        self._conn = conn
        host, port = conn.transport.current_host_and_port or ("?", 0)
        log.info("%s connected to %s:%s (%s)", self.name, host, port, self.flavor)
        for sub in self._subscriptions:
            self._send_subscribe(sub)

    def _connect_failure(self, where: str) -> str:
        login = f"user {self.config.username!r}, vhost {self.config.vhost!r}"
        if self._refusal is not None:
            return f"{where} refused the connection ({login}): {self._refusal}"
        if self._answered.is_set():
            return f"{where} closed the connection before CONNECTED, giving no reason ({login})"
        return (
            f"{where} accepted the connection but sent no CONNECTED within {self.config.receipt_timeout:g}s: "
            "the broker is overloaded or hung, or that port is not STOMP"
        )

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._connected.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()
            # Without a receipt stomp.py leaves its socket and receiver thread to the broker's
            # goodwill; close them here so reconnects never pile up threads.
            _abandon(conn)

    def release_refused_transaction(self) -> bool:
        """Close the connection if it holds a transaction a full ActiveMQ refused and no answer
        is awaited on it; True if closed (the owner connects again).  Why: the broker keeps
        that transaction, with the messages of it that it took (in memory, and pinning their
        journal files in the store), until the connection closes, and refuses an ABORT of it
        (:data:`~statusq.queues.stomp.refusals.ROLLBACK_ONLY`).  Kept, each refused try on a
        long-lived link (the settlement writer's re-sends, tried again every few seconds) would
        keep room the broker needs to drain."""
        if not self._refused_transaction:  # asked before every send: no lock the usual way
            return False
        with self._write_lock:
            if not (self._refused_transaction and self.connected) or self._receipts:
                return False
            log.info("%s: closing the connection: the broker frees a transaction it refused only with it", self.name)
            self._drop()
        return True

    def abandon(self, why: str) -> None:
        """Close the connection with answers still awaited, which then count as lost (the owner
        connects again).  For the settlement writer's re-sends: a full ActiveMQ holds their
        commit in its store wait, and waited for, their originals stayed unacked in the prefetch
        windows while nothing drained the store.  What the broker had not committed it rolls
        back with the connection (what it was committing just then may land: a duplicate)."""
        with self._write_lock:
            if self._conn is None:
                return
            log.info("%s: closing the connection: %s", self.name, why)
            self._drop()
        self.on_disconnected()

    def close(self) -> None:
        with self._write_lock:
            self._drop()
        self._wakeup.close()  # the receiver thread may still report; it writes no more
