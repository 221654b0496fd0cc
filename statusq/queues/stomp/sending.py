"""What a :class:`~statusq.queues.stomp.link.StompLink` writes: SENDs, transactions, and settlements.

Apart from connecting and receipts because these are the callers' frames, each kind written with
care of its own: a producer's SEND waits for its receipt; a batch goes in one transaction, written
in chunks as it is encoded (all or nothing, and the broker starts on it meanwhile); the settlement
writer's ACKs go out in one system call, and its re-sends in one transaction per window whose
receipt is looked at later (:meth:`~statusq.queues.stomp.receipts.Receipts.confirmed`), both
under the write lock, so a reconnect cannot come between "this generation is the live one" and
the write.  stomp.py writes each frame whole under its socket semaphore, and frames of a
transaction carry its name, so other frames may come between them.  A mixin, not an object of its
own: every write uses the link's connection, receipts and names for destinations.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from statusq.config import StompConfig
from statusq.queues.stomp.encode import ack_frame, encode_frame
from statusq.queues.stomp.receipts import Countdown
from statusq.queues.stomp.settlements import Resend
from statusq.queues.stomp.wire import new_ids

#: One message of a batch: destination, body, headers.
Send = tuple[str, bytes, dict[str, str]]
#: Frames of a batch written per system call (the broker starts on them while the rest are made).
_CHUNK = 100


class Sending:
    """The writing half of :class:`~statusq.queues.stomp.link.StompLink`."""

    # The link's own, set in its __init__ and its other mixins: what a write reads and changes.
    config: StompConfig
    generation: int
    _conn: Any
    _write_lock: threading.Lock
    _receipts: dict[str, threading.Event | Countdown]
    _confirmed: dict[str, bool]
    _failed_receipts: dict[str, str]
    _require: Callable[[], Any]
    _translated: Callable[[str], contextlib.AbstractContextManager[None]]
    _receipt: Callable[[], contextlib.AbstractContextManager[str]]
    _await: Callable[[str, threading.Event | Countdown, float], None]
    physical: Callable[[str], str]
    declaring: Callable[[str, dict[str, str]], dict[str, str]]
    queue_args: Callable[[str, dict[str, str]], dict[str, str]]
    release_refused_transaction: Callable[[], bool]

    if TYPE_CHECKING:  # the link's property (connecting.py): read here, never written

        @property
        def connected(self) -> bool: ...

    # -- a producer's side ------------------------------------------------------------------------

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
        is stored: a publisher confirm).  Refused by a full ActiveMQ, the connection is closed
        (the producer connects again): only that frees what the broker took of the transaction."""
        name, *receipts = new_ids(len(sends) + 2 if confirm_each else 2)
        # One waiter for all of them: an Event per receipt cost more than encoding its SEND.
        waiter = Countdown(len(receipts))
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
            self.release_refused_transaction()

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
        ACK of its original; COMMIT with a receipt, not waited for (see
        :meth:`~statusq.queues.stomp.receipts.Receipts.confirmed`).  None if ``generation`` is
        gone (nothing written)."""
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

    # -- moves of whole frames, waited for (the dead-letter admin's, a consumer's release) -------

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
