"""One writer for every settlement of a STOMP consumer: acks, retries, dead letters, recounts.

Why a thread of its own: a settlement held back for company (one write for many acks) used to
be written only when the worker's thread came back for the next frame.  A handler that ran long,
or hung until the supervisor's hard kill, so held *finished* items unacked; the broker then
redelivered them, and they ran again charged an attempt.  Here the worker's thread only records
a settlement (a list append under a lock); this writer puts it on the wire within ``ack_flush``
of being recorded, whatever that thread does next, and at once when a batch is full.

Why one transaction per window: each retry or dead letter used to be its own transaction with
a receipt waited for by the worker (~40 ms each).  Here all re-sends of a window travel in one
transaction, whose receipt the writer checks later without stopping (commits are pipelined:
plain ACKs recorded meanwhile are not held behind a receipt).

Why a second connection for them (``side``): a broker handles one connection's frames in order,
and ActiveMQ syncs its journal on each commit; on the consuming connection, every window's
commit held the ACKs behind it, the prefetch window ran dry, and 10% of items retried cost 40%
of the rate.  On a connection of their own, the re-sends commit beside the flow, and the
originals are ACKed once the commit's receipt is in.  A crash or a lost connection between the
two redelivers an original whose copy was sent: a duplicate (the copy is counted as an attempt
all the same), never a loss.  A side connection that cannot be had (or a stop that gives up
waiting for a receipt aside) falls back to the old way: the re-sends and the ACKs of their
originals in one transaction on the consuming connection.

Why a commit aside that fails, or stays unanswered on a live connection, is parked in the shared
store (:mod:`statusq.queues.stomp.parking`) or, with none, held and tried again
(:mod:`statusq.queues.stomp.holds`), rather than sent the old way: the cause is nearly always a
full broker (issue 18), which refused the old way's transaction in turn; ActiveMQ then neither
took the originals' ACKs again nor redelivered them until the connection was lost, and then they
ran again.  Parked rather than held where a store exists: held originals fill the prefetch
windows, and a worker with nothing to run frees none of the broker's room.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from statusq.queues.stomp import wire
from statusq.queues.stomp.holds import Holds
from statusq.queues.stomp.parking import Parking
from statusq.queues.stomp.settlelinks import SettleLink, SideLink
from statusq.queues.stomp.settlements import Resend, Settlements, Superseded, Window

__all__ = ["Resend", "SettleLink", "SettlementWriter", "Settlements", "SideLink", "Window"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Unconfirmed:
    receipt: str
    deadline: float
    count: int
    #: Which link the commit went on, to ask for its receipt.
    via: SettleLink | SideLink
    #: Sent without their ACKs (over the side link, or a held try): the originals still to ACK
    #: once confirmed (on ``generation`` of the consuming link), to hold if the broker refused
    #: as full, or to re-send the old way if the commit failed otherwise.
    resends: Sequence[Resend] = ()
    generation: int = 0
    held: bool = False  # a try of held re-sends


class SettlementWriter:
    """The thread that writes :class:`Settlements`; the worker's thread only records."""

    def __init__(
        self,
        link: SettleLink,
        *,
        flush_after: float,
        batch: int,
        receipt_timeout: float,
        name: str = "settler",
        clock: Callable[[], float] = time.monotonic,
        side: SideLink | None = None,
    ) -> None:
        self.link = link
        self.side = side
        self._poked = False
        self.receipt_timeout = receipt_timeout
        self.name = name
        self._clock = clock
        self._pending = Settlements(flush_after, batch)
        self._cond = threading.Condition(threading.Lock())
        self._unconfirmed: list[_Unconfirmed] = []
        self.holds = Holds(name)
        #: Where refused re-sends go instead of being held (the shared store); None: held.
        self.parking: Parking | None = None
        self.superseded = Superseded()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the worker's side: record, cheaply -----------------------------------------------------

    def ack(self, generation: int, ack_id: str) -> None:
        with self._cond:
            if self._pending.record_ack(generation, ack_id, self._clock()):
                self._cond.notify()

    def resend(self, generation: int, resend: Resend) -> None:
        with self._cond:
            if self._pending.record_resend(generation, resend, self._clock()):
                self._cond.notify()

    def hurry(self) -> None:
        """The worker found nothing more to do: write what is pending now (as the fetch that found
        the queue empty used to), instead of at ``ack_flush``.  Only a flag and a notify."""
        with self._cond:
            if self._pending and not self._pending.urgent:
                self._pending.urgent = True
                self._cond.notify()

    def poke(self) -> None:
        """A receipt came (the side link's receiver thread): look at it now, not at the next turn."""
        with self._cond:
            self._poked = True
            self._cond.notify()

    def void(self, generation: int) -> None:
        """A new connection: what was pending for the old one is void (the broker redelivers it)."""
        with self._cond:
            dropped = self._pending.void(generation)
        if dropped:
            log.warning("%s: %d settlement(s) of a lost connection dropped (redelivered)", self.name, dropped)

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"statusq-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is pending, wait for the receipts (at most ``timeout``); False if it could not."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        if thread is None:
            return self.flush_now(timeout)
        thread.join(timeout)
        return not thread.is_alive()

    def flush_now(self, timeout: float) -> bool:
        """Write what is pending from the calling thread (no writer thread is running)."""
        with self._cond:
            window = self._pending.take()
        self._write(window)
        return self._finish(self._clock() + timeout)

    @property
    def refusing(self) -> bool:
        """The broker refused re-sends as full (held, or parked within the last ``PARK_FOR``)."""
        return self.holds.active or (self.parking is not None and self.parking.direct())

    @property
    def held(self) -> int:
        """Originals held unacked because the broker is full (:mod:`statusq.queues.stomp.holds`)."""
        return len(self.holds)

    # -- the writer's thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                window = self._next_window()
                if window is None:
                    break
                self._write(window)
                now = self._clock()
                self._check_receipts(now)
                self._try_held(now)
            self._finish(self._clock() + self.receipt_timeout)
        except Exception:  # a bug of ours: say so; the broker redelivers what stayed unacked
            log.exception("%s: settlement writer failed", self.name)

    def _finish(self, deadline: float) -> bool:
        """At the end: the last commits confirmed (or given up at ``deadline``), and what is still
        held dropped: the connection closes next, and the broker redelivers those originals."""
        done = self._await_receipts(deadline)
        self.holds.drop("stopping")
        return done

    def _next_window(self) -> Window | None:
        """The next window to write, an empty one to look at receipts, None to stop."""
        with self._cond:
            now = self._clock()
            if not self._pending.due(now) and not self._stopping and not self._poked:
                wait = self._pending.wait_time(now)
                if self._unconfirmed:
                    wait = min(wait, self._pending.flush_after)
                held = self.holds.wait_time(now)
                if held is not None:
                    wait = min(wait, held)
                self._cond.wait(wait)
                now = self._clock()
            self._poked = False
            if self._stopping and not self._pending:
                return None
            if self._stopping:
                return self._pending.take()
            if self._pending.due(now):
                return self._pending.take(now)
            return Window(0)

    def _write(self, window: Window, *, aside: bool = True) -> None:
        """Never raises: a failed write is logged, and the broker redelivers the unacked frames."""
        if not window:
            return
        try:
            if window.acks and not self.link.write_acks(window.generation, window.acks):
                log.info("%s: %d ack(s) of a lost connection dropped (redelivered)", self.name, len(window.acks))
            if window.resends and aside and self.refusing:
                # The broker is full: straight to the store (parked), or with no store behind
                # what is held, not refused once more on their own
                if not self._park(window.generation, window.resends):
                    self.holds.hold(window.generation, window.resends, self._clock())
            elif window.resends and not (aside and self._commit_aside(window)):
                self._commit(window)
        except Exception as exc:
            log.error("%s: %d settlement(s) not written, the broker redelivers: %s", self.name, len(window), exc)

    def _commit_aside(self, window: Window) -> bool:
        """The re-sends over the side link; False when it cannot take them (the caller falls back)."""
        if self.side is None:
            return False
        try:
            receipt = self.side.commit_sends(window.resends) if self.side.ready() else None
        except Exception as exc:
            log.warning("%s: re-sends not written aside, written with the ACKs instead: %s", self.name, exc)
            return False
        if receipt is None:
            return False
        deadline = self._clock() + self.receipt_timeout
        entry = _Unconfirmed(receipt, deadline, len(window.resends), self.side, window.resends, window.generation)
        self._unconfirmed.append(entry)
        return True

    def _commit(self, window: Window) -> None:
        receipt = self.link.commit_resends(window.generation, window.resends)
        if receipt is None:
            log.info("%s: %d re-send(s) of a lost connection dropped (redelivered)", self.name, len(window.resends))
            return
        deadline = self._clock() + self.receipt_timeout
        self._unconfirmed.append(_Unconfirmed(receipt, deadline, len(window.resends), self.link))

    def _try_held(self, now: float) -> None:
        """Everything held, in one transaction without their ACKs (aside; on the consuming link
        only where there is no side link): the originals are ACKed once it is confirmed."""
        with self._cond:
            generation = self._pending.generation
        if self.holds.resends and self.holds.generation != generation:
            self.holds.drop("their connection was replaced")
        if not self.holds.due(now):
            return
        if self.side is not None and not self.side.ready():
            # Aside only: a full ActiveMQ holds a connection's SENDs in a store wait, and on the
            # consuming one that stalled its ACKs and heart-beats (and the connection was lost)
            self.holds.later(now)
            return
        resends = self.holds.take()
        via: SettleLink | SideLink = self.link
        try:
            if self.side is not None:
                via, receipt = self.side, self.side.commit_sends(resends)
            else:
                receipt = self.link.commit_resends(generation, resends, ack_originals=False)
        except Exception as exc:
            log.warning("%s: held re-sends not written (%s)", self.name, exc)
            receipt = None
        if receipt is None:
            self.holds.hold(generation, resends, now, refused_try=True)
            return
        entry = _Unconfirmed(receipt, now + self.receipt_timeout, len(resends), via, resends, generation, held=True)
        self._unconfirmed.append(entry)

    def _check_receipts(self, now: float, *, giving_up: bool = False) -> None:
        """``giving_up``: stopping, past the last wait: every receipt not in is failed."""
        still: list[_Unconfirmed] = []
        again: list[_Unconfirmed] = []
        for entry in self._unconfirmed:
            state = entry.via.confirmed(entry.receipt)
            full = state is False and entry.via.refused_as_full(entry.receipt)
            if state is None and entry.resends and not giving_up:
                # Sent without their ACKs on a connection still up (its heart-beats kept, or it
                # would have been dropped and the receipt failed): a broker with no room holds
                # the commit (ActiveMQ: one store wait per SEND).  Sent again with their ACKs, it
                # was a copy more, refused, and originals redelivered: wait, the originals held.
                if now >= entry.deadline and not entry.held and entry.generation >= self.holds.generation:
                    if self.parking is not None and entry.via is self.side and self.side is not None:
                        # With a store to park in, not waited for: the side connection is closed
                        # (what it had not committed, the broker rolls back), and the next look
                        # finds its commits lost and parks them, their originals acked
                        self.side.abandon(f"re-sends unconfirmed for {self.receipt_timeout:g}s: parked instead")
                    else:
                        entry.held = True
                        self.holds.overdue(entry.generation, entry.count, now)
                still.append(entry)
            elif state is None and now < entry.deadline and not giving_up:
                still.append(entry)
            elif entry.resends and state:
                self._ack_originals(entry.generation, entry.resends)
                if entry.held:
                    self.holds.settled(entry.count, now, taken=True)
                if self.parking is not None:
                    self.parking.taken()
            elif entry.resends and not entry.held and self._park(entry.generation, entry.resends):
                pass  # refused, or lost with the side connection: parked, their originals acked
            elif entry.resends and not giving_up:
                # Refused (a full broker: the usual cause), or lost with the side connection (a
                # full ActiveMQ may stop answering it until the heart-beats give up).  Sent again
                # with their ACKs it was refused in turn, and took the ACKs down: the originals
                # were redelivered and run again.  Held, they wait unacked and are tried again.
                why = "refused re-sends as full" if full else "refused re-sends, or lost their connection"
                self.holds.hold(entry.generation, entry.resends, now, refused_try=entry.held, why=why)
            elif entry.resends:
                if entry.held:
                    self.holds.settled(entry.count, now, taken=False)
                again.append(entry)
            elif not state:
                why = "refused or connection lost" if state is False else f"no receipt in {self.receipt_timeout:g}s"
                log.error(
                    "%s: commit of %d re-send(s) failed (%s%s): the broker redelivers the originals",
                    self.name,
                    entry.count,
                    why,
                    ", the broker is full" if full else "",
                )
        self._unconfirmed = still
        for entry in again:
            # Never confirmed aside: maybe sent, maybe not.  Sending again with the ACKs is a
            # possible duplicate; not sending would leave the originals held, unacked, for as
            # long as the consuming connection lives.
            log.warning("%s: %d re-send(s) unconfirmed aside: written with their ACKs instead", self.name, entry.count)
            self._write(Window(entry.generation, [], list(entry.resends)), aside=False)

    def _park(self, generation: int, resends: Sequence[Resend]) -> bool:
        """``resends`` parked in the shared store and their originals acked; False: not parked
        (no store for them, or it failed), still to hold or send."""
        if self.parking is None or not self.parking.park(resends):
            return False
        self._ack_originals(generation, resends)
        return True

    def _ack_originals(self, generation: int, resends: Sequence[Resend]) -> None:
        """The originals of re-sends the broker (or the store) took."""
        try:
            if self.link.write_acks(generation, [r.ack_id for r in resends]):
                return
            why = "their connection is gone"
        except Exception as exc:
            why = str(exc)
        self.superseded.add(r.headers.get(wire.ID) for r in resends)
        log.warning(
            "%s: %d original(s) of re-sends taken not ACKed (%s): the broker redelivers them; acked unrun "
            "if they come back here, run again elsewhere",
            self.name,
            len(resends),
            why,
        )

    def _await_receipts(self, deadline: float) -> bool:
        """At the end: the last commits confirmed, or given up at ``deadline``."""
        while self._unconfirmed:
            now = self._clock()
            self._check_receipts(now, giving_up=now >= deadline)
            if self._unconfirmed:
                time.sleep(0.005)
        return True
