"""One STOMP connection, with the care stomp.py leaves to its users.

- Frames are handed off stomp.py's receiver thread at once (a queue and a wake-up pipe): a slow
  handler must not stall the thread that answers heartbeats, and an exception in a listener
  callback would end that thread for good.
- Every wait has a timeout: receipts, connects.
- Settlements (acks, and the transactions of re-sends) are written by one thread of the
  consumer's (:mod:`statusq.queues.stomp.settler`) through :meth:`StompLink.write_acks` and
  :meth:`StompLink.commit_resends`; stomp.py writes each frame whole under its socket semaphore,
  and frames of a transaction carry its name, so other frames may come between them.
- stomp.py neither reconnects nor resubscribes after a drop: :meth:`StompLink.connect` builds a
  fresh connection (trying the servers in order: failover) and replays the subscriptions.  Each
  connection has a generation number, so an ack for a frame of an older connection is dropped
  (the broker redelivers that frame anyway).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import stomp
from stomp.exception import ConnectFailedException, StompException

from statusq.config import StompConfig
from statusq.errors import BrokerFull, ConnectionClosed, QueueError
from statusq.queues.stomp import frames
from statusq.queues.stomp.delays import queue_declare_args, site_queue_args
from statusq.queues.stomp.encode import ack_frame, encode_frame
from statusq.queues.stomp.refusals import FULL, declare_refusal, is_full
from statusq.queues.stomp.settler import Resend
from statusq.queues.stomp.wire import new_ids
from statusq.wakeup import WakePipe

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Frame:
    """A received MESSAGE, as the receiver thread hands it over (not frozen: a frozen dataclass
    costs a ``object.__setattr__`` per field, in the thread every frame passes through)."""

    generation: int
    headers: dict[str, str]
    body: bytes
    #: When a consumer first saw it waiting (statusq.queues.stomp.consumer.give_back_waiting).
    seen: float = 0.0


#: One message of a batch: destination, body, headers.
Send = tuple[str, bytes, dict[str, str]]
#: A full broker's refusals logged at most once in this many seconds per connection.
_FULL_LOG_EVERY = 60.0
#: How long a full broker's refusal explains a failed COMMIT on the same link (seconds).
_FULL_LATELY = 30.0
#: Frames of a batch written per system call (the broker starts on them while the rest are made).
_CHUNK = 100


@dataclass(frozen=True, slots=True)
class _Subscription:
    destination: str
    id: str
    ack: str
    headers: dict[str, str]


def _abandon(conn: Any) -> None:
    """Close a connection that never became ours (no DISCONNECT: it was never CONNECTED)."""
    with contextlib.suppress(Exception):
        conn.transport.running = False
        conn.transport.disconnect_socket()


def _server(entry: str) -> tuple[str, int]:
    host, _, port = entry.rpartition(":")
    return host, int(port)


class _Countdown:
    """Stands for the Events of a batch's receipts: set once per receipt, it wakes its waiter
    when all have come.  An ERROR or a lost connection sets every receipt still listed (come
    or not), so it then wakes at once, and the waiter finds which ones failed or never came."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._lock = threading.Lock()
        self._done = threading.Event()

    def set(self) -> None:
        with self._lock:
            self._left -= 1
            if self._left <= 0:
                self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def is_set(self) -> bool:
        return self._done.is_set()


class StompLink(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, config: StompConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.frames: queue.SimpleQueue[Frame] = queue.SimpleQueue()
        self.generation = 0
        self.flavor = config.flavor if config.flavor != "auto" else "activemq"
        self._conn: Any = None
        self._subscriptions: list[_Subscription] = []
        self._sub_count = 0
        self._logical: dict[str, str] = {}
        self._receipts: dict[str, threading.Event | _Countdown] = {}
        self._failed_receipts: dict[str, str] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        #: While connecting: the broker said something (CONNECTED, an ERROR, or hung up), and
        #: what it refused with.  So a failed connect names its cause instead of guessing one.
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._confirmed: dict[str, bool] = {}  # receipts of pipelined commits, as they come
        self._write_lock = threading.Lock()  # one writer at a time against reconnects
        self._wakeup = WakePipe()
        #: Called (receiver thread) when a receipt comes or can no longer come: lets a writer
        #: waiting on pipelined commits look at once instead of at its next turn.
        self.receipt_hook: Callable[[], None] | None = None
        #: When the broker last sent a heartbeat or a receipt (monotonic): a receipt that does
        #: not come from a broker heard meanwhile means it is alive and holding us back.
        self.heard_at = 0.0
        self._warned_type = False
        #: A full broker's refusal of a SEND without a receipt, not yet matched with the failed
        #: COMMIT of its transaction (on_error); and when a full broker was last logged.
        self._full_refusal: str | None = None
        self._full_logged_at = self._full_seen_at = float("-inf")
        self._refused_full: set[str] = set()  # receipts confirmed() found refused as full

    # -- the receiver thread's side: record and wake, never raise -------------------------------

    def _wake(self) -> None:
        # One byte per wake-up, not per frame (WakePipe): each syscall here hands the GIL to the
        # worker's thread and back, which at 10,000 frames a second is most of the cost.
        self._wakeup.wake()

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

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body or "").encode()
        headers = frame.headers  # a dict stomp.py parsed for this frame alone: ours now
        if self._logical and "destination" in headers:
            headers["destination"] = self._logical.get(headers["destination"], headers["destination"])
        self.frames.put(Frame(self.generation, headers, body))
        self._wake()

    def on_heartbeat(self) -> None:
        self.heard_at = time.monotonic()

    def on_receipt(self, frame: Any) -> None:
        self.heard_at = time.monotonic()
        receipt = frame.headers.get("receipt-id", "")
        event = self._receipts.get(receipt)
        if event is not None and not self._confirmed.get(receipt):  # a receipt counts once
            self._confirmed[receipt] = True
            event.set()
        self._tell_receipts()

    def _tell_receipts(self) -> None:
        hook = self.receipt_hook
        if hook is not None:
            try:
                hook()
            except Exception:  # never into stomp.py's receiver thread: it would end it
                log.exception("%s: receipt hook failed", self.name)

    def on_error(self, frame: Any) -> None:
        message = frame.headers.get("message", "")
        detail = (frame.body or b"")[:500]
        full = is_full(message, detail)
        receipt = frame.headers.get("receipt-id", "")
        now = time.monotonic()
        # A transaction's COMMIT refused after a SEND of it was ("Transaction marked rollback
        # only"); ActiveMQ's two ERRORs may come in either order, so a full refusal lately will do
        lately = self._full_refusal is not None or now - self._full_seen_at < _FULL_LATELY
        explained = receipt in self._receipts and lately
        if full:
            self._full_seen_at = now
        if (full and now - self._full_logged_at < _FULL_LOG_EVERY) or explained:
            # A full broker refuses every SEND until it drains: its refusals (a producer's
            # BrokerFull, the settlement writer's holds) say so, not one line each here
            log.debug("broker error on %s: %s", self.name, message)
        elif full:  # the Java stack trace says nothing more to an operator
            self._full_logged_at = now
            log.error("broker error on %s: the broker is full: %s", self.name, message)
        else:
            log.error("broker error on %s: %s %r", self.name, message, detail)
        refusal = declare_refusal(message, detail, self.config.max_priority, self.config.queue_type)
        if refusal is not None:
            log.error("%s: %s", self.name, refusal)
        if not self._connected.is_set():
            self._refusal = f"{message} {detail.decode('utf-8', 'replace').strip()}".strip() or "an ERROR frame"
            self._answered.set()
        reason = message if full else f"{message} {detail.decode('utf-8', 'replace').strip()}"
        if refusal is not None:
            reason = f"{reason}: {refusal}"
        if full and not receipt and self._connected.is_set():
            # ActiveMQ refused a SEND that asked for no receipt (one of a transaction's) and keeps
            # the connection: that transaction's COMMIT fails next, with an ERROR of its own
            self._full_refusal = reason
            return
        if explained or (full and receipt in self._receipts):
            # The answer to one frame, from a full broker that keeps the connection (ActiveMQ):
            # that frame failed, not the others in flight ("COMMIT FAILED: Transaction marked
            # rollback only" after a refused SEND of the transaction's)
            lately_why = self._full_refusal or "the broker refused SENDs as full lately"
            reason, self._full_refusal = reason if full else f"{lately_why} ({reason})", None
            self._failed_receipts[receipt] = FULL + reason
            self._receipts[receipt].set()
            self._tell_receipts()
            return
        # Otherwise the broker closes the connection after an ERROR frame: nothing pending will
        # be confirmed, so fail every waiter now rather than at its timeout.
        for pending, event in list(self._receipts.items()):
            self._failed_receipts[pending] = (FULL if full else "") + reason
            event.set()
        self._tell_receipts()

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

    def physical(self, destination: str) -> str:
        """The broker's name for a destination.  RabbitMQ refuses '/' inside a queue name, so
        ``/queue/statusq/main/distrib`` becomes ``/queue/statusq.main.distrib`` there; the map
        back is kept, so frames report the destination we subscribed to."""
        if self.flavor != "rabbitmq":
            return destination
        for prefix in ("/queue/", "/topic/"):
            if destination.startswith(prefix):
                name = prefix + destination.removeprefix(prefix).strip("/").replace("/", ".")
                self._logical[name] = destination
                return name
        return destination

    def declaring(self, destination: str, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the queue arguments a frame to ``destination`` must carry (RabbitMQ
        queues: ``x-queue-type``, ``x-max-priority``; see :func:`~statusq.queues.stomp.delays.queue_declare_args`)."""
        args = self.queue_args(destination, headers)
        return {**headers, **args} if args else headers

    def queue_args(self, destination: str, headers: dict[str, str]) -> dict[str, str]:
        """The queue arguments alone (they depend on ``headers`` only through ``x-message-ttl``)."""
        config = self.config
        args = queue_declare_args(
            self.flavor,
            destination,
            headers,
            basename=config.basename,
            dead_letter=config.dead_letter_destination,
            control=config.control_channel,
            max_priority=config.max_priority,
            queue_type=config.queue_type,
        )
        if self.flavor == "rabbitmq" and "x-message-ttl" not in headers:
            args.update(
                site_queue_args(destination, basename=config.basename, hold=config.hot_hold, physical=self.physical)
            )
        return args

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def drain_wakeups(self) -> None:
        if self._wakeup.pending:
            self._wakeup.drain()

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
            self._full_refusal = None
            self._refused_full.clear()
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

    def close(self) -> None:
        with self._write_lock:
            self._drop()
        self._wakeup.close()  # the receiver thread may still report; it writes no more

    def _require(self) -> Any:
        if not self.connected:
            raise ConnectionClosed(f"{self.name}: not connected")
        return self._conn

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except QueueError:
            raise
        except (StompException, OSError) as exc:
            raise ConnectionClosed(f"{self.name}: {what} failed: {exc!r}") from None

    def subscribe(self, destination: str, ack: str = "client-individual", headers: dict[str, str] | None = None) -> str:
        self._sub_count += 1  # not the list's length: a subscription may have been removed
        sub = _Subscription(destination, f"sub-{self._sub_count - 1}", ack, dict(headers or {}))
        self._subscriptions.append(sub)
        if self.connected:
            self._send_subscribe(sub)
        return sub.id

    def unsubscribe(self, sub_id: str) -> None:
        """Forget a subscription (not replayed on a reconnect) and end it on the broker."""
        self._subscriptions = [s for s in self._subscriptions if s.id != sub_id]
        if self.connected:
            with self._translated("UNSUBSCRIBE"):
                self._require().unsubscribe(sub_id)

    def _send_subscribe(self, sub: _Subscription) -> None:
        with self._translated("SUBSCRIBE"):
            headers = self.declaring(sub.destination, sub.headers)
            self._require().subscribe(self.physical(sub.destination), sub.id, ack=sub.ack, headers=headers)

    def send(self, destination: str, body: bytes, headers: dict[str, str], *, confirm: bool) -> None:
        """SEND; with ``confirm``, return only once the broker has the message (a receipt)."""
        with self._translated("SEND"):
            conn = self._require()
            headers = self.declaring(destination, headers)
            if not confirm:
                conn.send(self.physical(destination), body, headers=headers)
                return
            with self._receipt() as receipt:
                conn.send(self.physical(destination), body, headers={**headers, "receipt": receipt})

    def send_batch(self, sends: Sequence[Send], *, confirm_each: bool) -> None:
        """BEGIN, every SEND, COMMIT with a receipt; returns once the broker confirmed the COMMIT
        (all or nothing: a connection lost before it drops the transaction).  Written in chunks
        as they are made, so the broker starts on them.  ``confirm_each``: every SEND's receipt
        waited for too (RabbitMQ answers a COMMIT once the messages are routed, a SEND once it
        is stored: a publisher confirm)."""
        name, *receipts = new_ids(len(sends) + 2 if confirm_each else 2)
        # One waiter for all of them: an Event per receipt cost more than encoding its SEND.
        waiter = _Countdown(len(receipts))
        events = [waiter] * len(receipts)
        with self._write_lock, self._translated("transaction"):
            self._require()
            self._receipts.update(zip(receipts, events, strict=True))
            chunk = [encode_frame("BEGIN", {"transaction": name})]
            # What a frame adds for its destination, worked out once per destination (and per
            # kind: a holding queue's frames carry their own arguments) rather than per frame.
            added: dict[tuple[str, bool], dict[str, str]] = {}
            try:
                for n, (destination, body, headers) in enumerate(sends):
                    key = (destination, "x-message-ttl" in headers)
                    extra = added.get(key)
                    if extra is None:
                        extra = added[key] = {
                            **self.queue_args(destination, headers),
                            "destination": self.physical(destination),
                            "transaction": name,
                        }
                    wired = {**headers, **extra}
                    if confirm_each:
                        wired["receipt"] = receipts[n + 1]
                    chunk.append(encode_frame("SEND", wired, body))
                    if len(chunk) >= _CHUNK:
                        self._conn.transport.send(b"".join(chunk))
                        chunk = []
            except BaseException:
                with contextlib.suppress(Exception):  # what was written is dropped, never committed
                    self._conn.transport.send(encode_frame("ABORT", {"transaction": name}))
                raise
            chunk.append(encode_frame("COMMIT", {"transaction": name, "receipt": receipts[0]}))
            self._conn.transport.send(b"".join(chunk))
        try:
            deadline = time.monotonic() + self.config.receipt_timeout
            for receipt, event in zip(receipts, events, strict=True):
                self._await(receipt, event, deadline)
        finally:
            for receipt in receipts:
                self._receipts.pop(receipt, None)
                self._confirmed.pop(receipt, None)
                self._failed_receipts.pop(receipt, None)

    def _await(self, receipt: str, event: threading.Event | _Countdown, deadline: float) -> None:
        if not event.wait(max(0.0, deadline - time.monotonic())):
            waited = self.config.receipt_timeout
            if self.heard_at > deadline - waited:
                # Alive (it sent heartbeats meanwhile) but confirming nothing: throttling.  No
                # resend on another connection: RabbitMQ lets a new connection's first SEND
                # through before blocking it, so each resend would add a copy and load.
                raise BrokerFull(
                    f"{self.name}: no receipt within {waited:g}s from a broker that is alive (its "
                    "heartbeats came meanwhile): it is throttling producers (RabbitMQ blocks them "
                    "while a memory or disk alarm lasts; ActiveMQ's producer flow control). What "
                    "was sent may still be enqueued when it lets go: try again later"
                )
            raise ConnectionClosed(
                f"{self.name}: no receipt within {waited:g}s and nothing heard from the broker "
                "meanwhile: it is unreachable, frozen or overloaded"
            )
        failed = self._failed_receipts.pop(receipt, None)
        if failed is not None and failed.startswith(FULL):
            raise BrokerFull(
                f"{self.name}: the broker is full and refused the items (nothing of this call was "
                f"enqueued; try again once its backlog drains): {failed.removeprefix(FULL)}"
            )
        if failed is not None:
            raise QueueError(f"{self.name}: broker refused: {failed}")
        if not self._confirmed.get(receipt):
            raise ConnectionClosed(f"{self.name}: connection lost before the receipt")

    # -- the settlement writer's side (statusq.queues.stomp.settler) ------------------------------
    # Under _write_lock, so a reconnect cannot slip between "this generation is the live one"
    # and the write: an ACK for a frame of the old connection, written on the new one, is an
    # unknown id to the broker (ActiveMQ answers with an ERROR and closes the connection).

    def write_acks(self, generation: int, ack_ids: Sequence[str]) -> bool:
        """ACK frames in one system call (one write per ACK cost a GIL hand-over to the receiver
        thread each, which halved throughput); False if ``generation`` is gone (not written)."""
        data = b"".join([ack_frame(a) for a in ack_ids])
        with self._write_lock:
            if generation != self.generation or not self.connected:
                return False
            with self._translated("ACK"):
                self._conn.transport.send(data)
        return True

    def commit_resends(self, generation: int, resends: Sequence[Resend], *, ack_originals: bool = True) -> str | None:
        """BEGIN; each SEND and (``ack_originals``: the originals arrived on this connection) the
        ACK of its original; COMMIT with a receipt, not waited for (see :meth:`confirmed`).
        None if ``generation`` is gone (nothing written)."""
        with self._write_lock:
            if generation != self.generation or not self.connected:
                return None
            name, receipt = uuid.uuid4().hex, uuid.uuid4().hex
            frames = [encode_frame("BEGIN", {"transaction": name})]
            for r in resends:
                headers = {**self.declaring(r.destination, r.headers), "transaction": name}
                headers["destination"] = self.physical(r.destination)
                frames.append(encode_frame("SEND", headers, r.body))
                if ack_originals:
                    frames.append(encode_frame("ACK", {"id": r.ack_id, "transaction": name}))
            frames.append(encode_frame("COMMIT", {"transaction": name, "receipt": receipt}))
            self._receipts[receipt] = threading.Event()
            try:
                with self._translated("transaction"):
                    self._conn.transport.send(b"".join(frames))
            except BaseException:
                # Half a transaction on the wire means a broken socket: the broker drops it
                # with the connection, and redelivers the originals.
                self._receipts.pop(receipt, None)
                raise
        return receipt

    def confirmed(self, receipt: str) -> bool | None:
        """True once the broker confirmed ``receipt``; False if it never will (an ERROR, the
        connection gone); None while it may still come.  Forgets a receipt once decided."""
        if self._confirmed.pop(receipt, None) is not None:
            self._receipts.pop(receipt, None)
            return True
        event = self._receipts.get(receipt)
        if event is not None and not event.is_set():
            return None
        self._receipts.pop(receipt, None)
        if (self._failed_receipts.pop(receipt, None) or "").startswith(FULL):
            self._refused_full.add(receipt)
        return False

    def refused_as_full(self, receipt: str) -> bool:
        """Whether ``receipt``, just found not confirmed, was refused by a full broker (the
        connection lives on: the originals of what it carried stay unacked, not redelivered)."""
        if receipt not in self._refused_full:
            return False
        self._refused_full.discard(receipt)
        return self.connected

    @contextlib.contextmanager
    def transaction(self) -> Iterator[str]:
        """BEGIN … COMMIT with a receipt on the COMMIT; ABORT if the body raises."""
        name = uuid.uuid4().hex
        with self._translated("transaction"):
            conn = self._require()
            conn.begin(name)
            try:
                yield name
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.abort(name)
                raise
            with self._receipt() as receipt:
                conn.commit(name, headers={"receipt": receipt})

    def send_in(self, transaction: str, destination: str, body: bytes, headers: dict[str, str]) -> None:
        with self._translated("SEND"):
            wired = {**self.declaring(destination, headers), "transaction": transaction}
            self._require().send(self.physical(destination), body, headers=wired)

    def ack_in(self, transaction: str, ack_id: str) -> None:
        with self._translated("ACK"):
            self._require().ack(ack_id, transaction=transaction)

    @contextlib.contextmanager
    def _receipt(self) -> Iterator[str]:
        receipt = uuid.uuid4().hex
        event = self._receipts[receipt] = threading.Event()
        try:
            yield receipt
            self._await(receipt, event, time.monotonic() + self.config.receipt_timeout)
        finally:
            self._receipts.pop(receipt, None)
            self._confirmed.pop(receipt, None)
