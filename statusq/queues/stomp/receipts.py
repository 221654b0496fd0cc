"""What the broker answered a :class:`~statusq.queues.stomp.link.StompLink`: receipts, and ERROR frames.

Apart from connecting and sending because it is bookkeeping that two threads share by rules of
its own: stomp.py's receiver thread records an answer and wakes its waiter (never raising: an
exception there ends that thread for good), and the owner's threads wait for a receipt with a
timeout, for a batch's all at once (:class:`Countdown`), or look at a pipelined commit's later
(:meth:`Receipts.confirmed`).  An ERROR frame fails either the one frame it answers, when a full
broker refuses and keeps the connection (ActiveMQ: marked :data:`~statusq.queues.stomp.refusals.FULL`,
so a producer gets :class:`~statusq.errors.BrokerFull` and the settlement writer holds its
re-sends, rather than either calling it a fault), or every waiter, when the broker closes the
connection after it.  A missing receipt is told apart the same way: a broker heard from meanwhile
is throttling, a silent one is gone.  A mixin, not an object of its own: the link's sends register
the receipts, a disconnect ends them all, and a connect forgets the old connection's refusals.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from statusq.config import StompConfig
from statusq.errors import BrokerFull, ConnectionClosed, QueueError
from statusq.queues.stomp.refusals import FULL, ROLLBACK_ONLY, declare_refusal, is_full

# The name these messages logged under before they left statusq.queues.stomp.link.
log = logging.getLogger("statusq.queues.stomp.link")

#: A full broker's refusals logged at most once in this many seconds per connection.
_FULL_LOG_EVERY = 60.0
#: How long a full broker's refusal explains a failed COMMIT on the same link (seconds).
_FULL_LATELY = 30.0
#: How long a refused COMMIT waits for the ERROR of the SEND that made it fail (it may come second).
_ROLLBACK_CAUSE_WAIT = 2.0


class Countdown:
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


class Receipts:
    """The answers' half of :class:`~statusq.queues.stomp.link.StompLink`."""

    # The link's own, set in its __init__ and its other mixins: what the answers read.
    config: StompConfig
    name: str
    _connected: threading.Event
    _connect_refused: Callable[[str, bytes], None]

    if TYPE_CHECKING:  # the link's property (connecting.py): read here, never written

        @property
        def connected(self) -> bool: ...

    def _start_receipts(self) -> None:
        """Nothing sent, nothing answered yet."""
        self._receipts: dict[str, threading.Event | Countdown] = {}
        self._failed_receipts: dict[str, str] = {}
        self._confirmed: dict[str, bool] = {}  # receipts of pipelined commits, as they come
        #: Called (receiver thread) when a receipt comes or can no longer come: lets a writer
        #: waiting on pipelined commits look at once instead of at its next turn.
        self.receipt_hook: Callable[[], None] | None = None
        #: When the broker last sent a heartbeat or a receipt (monotonic): a receipt that does
        #: not come from a broker heard meanwhile means it is alive and holding us back.
        self.heard_at = 0.0
        #: A full broker's refusal of a SEND without a receipt, not yet matched with the failed
        #: COMMIT of its transaction (on_error); and when a full broker was last logged.
        self._full_refusal: str | None = None
        self._full_logged_at = self._full_seen_at = float("-inf")
        self._refused_full: set[str] = set()  # receipts confirmed() found refused as full
        #: Pipelined commits refused as rollback-only before any full refusal was seen: when
        #: (confirmed() waits a moment for the ERROR of the SEND that caused it).
        self._rolled_back_at: dict[str, float] = {}
        #: The connection holds a transaction ActiveMQ refused (:data:`ROLLBACK_ONLY`): only
        #: closing it frees what that transaction took (``release_refused_transaction``).
        self._refused_transaction = False

    def _forget_refusals(self) -> None:
        """A new connection: a full broker's refusals on the old one explain nothing on it."""
        self._full_refusal = None
        self._refused_full.clear()
        self._rolled_back_at.clear()
        self._refused_transaction = False

    # -- the receiver thread's side: record and wake, never raise -------------------------------

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
        if ROLLBACK_ONLY in message and self._connected.is_set():
            self._refused_transaction = True
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
        self._connect_refused(message, detail)
        reason = message if full else f"{message} {detail.decode('utf-8', 'replace').strip()}"
        if refusal is not None:
            reason = f"{reason}: {refusal}"
        if full and not receipt and self._connected.is_set():
            # ActiveMQ refused a SEND that asked for no receipt (one of a transaction's) and keeps
            # the connection: that transaction's COMMIT fails next, with an ERROR of its own
            self._full_refusal = reason
            return
        if receipt in self._receipts and (explained or full or ROLLBACK_ONLY in message):
            # The answer to one frame, from a broker that keeps the connection (ActiveMQ): that
            # frame failed, not the others in flight ("COMMIT FAILED: Transaction marked rollback
            # only" after a refused SEND of the transaction's, even before that SEND's ERROR
            # came: failing every waiter then failed the next commit's receipt too, though the
            # broker took that commit, and its re-sends were sent twice)
            if full or explained:
                lately_why = self._full_refusal or "the broker refused SENDs as full lately"
                reason, self._full_refusal = reason if full else f"{lately_why} ({reason})", None
                reason = FULL + reason
            else:
                self._rolled_back_at[receipt] = now
            self._failed_receipts[receipt] = reason
            self._receipts[receipt].set()
            self._tell_receipts()
            return
        # Otherwise the broker closes the connection after an ERROR frame: nothing pending will
        # be confirmed, so fail every waiter now rather than at its timeout.
        for pending, event in list(self._receipts.items()):
            self._failed_receipts[pending] = (FULL if full else "") + reason
            event.set()
        self._tell_receipts()

    # -- the owner's side -------------------------------------------------------------------------

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

    def _why_rolled_back(self, failed: str) -> str:
        """A COMMIT refused as "marked rollback only" before the ERROR of the SEND that caused it
        (ActiveMQ sent them in that order under load, and the refusal read as a plain fault):
        wait a moment for that ERROR, and if it says full, so is this."""
        until = time.monotonic() + _ROLLBACK_CAUSE_WAIT
        while time.monotonic() < until:
            if (full := self._full_rollback(failed)) is not None:
                return full
            time.sleep(0.02)
        return failed

    def _full_rollback(self, failed: str) -> str | None:
        """``failed`` (refused as rollback-only) as a full broker's refusal, if one was seen
        lately; None while none was."""
        if time.monotonic() - self._full_seen_at >= _FULL_LATELY:
            return None
        return FULL + (self._full_refusal or "the broker refused a SEND of it as full") + f" ({failed})"

    def _await(self, receipt: str, event: threading.Event | Countdown, deadline: float) -> None:
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
        self._rolled_back_at.pop(receipt, None)
        if failed is not None and ROLLBACK_ONLY in failed and not failed.startswith(FULL):
            failed = self._why_rolled_back(failed)
        if failed is not None and failed.startswith(FULL):
            raise BrokerFull(
                f"{self.name}: the broker is full and refused the items (nothing of this call was "
                f"enqueued; try again once its backlog drains): {failed.removeprefix(FULL)}"
            )
        if failed is not None:
            raise QueueError(f"{self.name}: broker refused: {failed}")
        if not self._confirmed.get(receipt):
            raise ConnectionClosed(f"{self.name}: connection lost before the receipt")

    # -- the settlement writer's side (statusq.queues.stomp.settler): pipelined commits ----------

    def confirmed(self, receipt: str) -> bool | None:
        """True once the broker confirmed ``receipt``; False if it never will (an ERROR, the
        connection gone); None while it may still come.  Forgets a receipt once decided."""
        if self._confirmed.pop(receipt, None) is not None:
            self._receipts.pop(receipt, None)
            return True
        event = self._receipts.get(receipt)
        if event is not None and not event.is_set():
            return None
        rolled_back = self._rolled_back_at.get(receipt)
        if rolled_back is not None:
            # Refused as rollback-only before the ERROR of the SEND that caused it: full if that
            # comes within a moment (as _why_rolled_back waits for a caller that blocks)
            full = self._full_rollback(self._failed_receipts.get(receipt, ""))
            if full is not None:
                self._failed_receipts[receipt] = full
            elif time.monotonic() - rolled_back < _ROLLBACK_CAUSE_WAIT:
                return None
            del self._rolled_back_at[receipt]
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
