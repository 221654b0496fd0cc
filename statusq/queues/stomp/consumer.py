"""One worker's STOMP consumer: subscriptions per group and breakout, fair turns, settlements.

Where a frame enters: :meth:`StompLink.on_message` (receiver thread) queues it; :meth:`fetch`
(the worker's loop) takes it, and only reads: a redelivered frame is handed up flagged, and the
listener counts it (:mod:`statusq.io.listener`); only what is no item yet it settles itself (a
delayed item that came before its eta, a producer's queue-declaring message).  Where an ack goes out: :meth:`ack`,
:meth:`retry` and :meth:`dead_letter` only record the settlement; the consumer's
:class:`SettlementWriter` thread writes it within ``[queue] ack_flush`` (re-sends with the ACKs
of their originals in one transaction, so a crash in between duplicates an item, never loses it).

Hot sites (:mod:`statusq.queues.stomp.hot`): an item taken from a shared destination (a group's
shards or unsharded queue) of a site counted hot is not handed up but moved to the site's own
destination (:meth:`_moved`), which this worker then subscribes to and serves in turn: that
half is :class:`~statusq.queues.stomp.hotmoves.HotSiteMoves`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from statusq.config import StompConfig
from statusq.errors import ConnectionClosed, QueueError
from statusq.item import Delivery
from statusq.queues.base import Consumer
from statusq.queues.stomp import wire
from statusq.queues.stomp.delays import early_route, hold_route, retry_route
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.hotfile import HotFile
from statusq.queues.stomp.hotmoves import MOVES_PER_TURN, HotSiteMoves
from statusq.queues.stomp.link import Frame, StompLink
from statusq.queues.stomp.parking import Parking
from statusq.queues.stomp.redial import Redial
from statusq.queues.stomp.settler import Resend, SettlementWriter
from statusq.queues.stomp.sidelink import ResendLink
from statusq.queues.stomp.storedelays import Send, StoreDelays

# MOVES_PER_TURN re-exported: it lives with the hot-site moves (hotmoves.py) since they left here.
__all__ = ["EARLY_TOLERANCE", "MOVES_PER_TURN", "StompConsumer", "ack_batch"]

log = logging.getLogger(__name__)

#: A delayed item arriving less than this before its eta runs (ActiveMQ's scheduler and
#: RabbitMQ's holding queues deliver late, not early: only hosts' clocks apart bring this).
EARLY_TOLERANCE = 0.05


def ack_batch(prefetch: int) -> int:
    """Settlements written at once, before ``ack_flush`` is up: a quarter of the prefetch window
    (the broker sends no more than the window holds unacked), at most 32."""
    return max(1, min(32, prefetch // 4))


class StompConsumer(HotSiteMoves, Consumer):
    """``destinations``: what this worker subscribes to; ``routes``: what a destination says about
    a foreign producer's items; ``outgoing``: what every re-send adds to its headers."""

    def __init__(
        self,
        config: StompConfig,
        destinations: Sequence[str],
        routes: Destinations,
        *,
        default_site: str,
        outgoing: wire.Outgoing,
        ack_flush: float,
        prefetch: int,
        hot_file: HotFile | None = None,
        delays: StoreDelays | None = None,
    ) -> None:
        self.config = config
        #: Where a delayed re-send waits (the shared store on ActiveMQ); None: the broker's way.
        self.delays = delays
        self.routes = routes
        self.default_site = default_site
        self.outgoing = outgoing
        self.link = StompLink(self.config, "consumer")
        self._window = {"activemq.prefetchSize": str(prefetch), "prefetch-count": str(prefetch)}
        self.destinations = list(destinations)
        # One local queue per subscription, served in turns: a flooded site's breakout cannot
        # keep another subscription's items waiting behind its whole prefetch window.
        self._pending: dict[str, deque[Frame]] = {}
        #: Subscriptions to shared destinations (a site's items may be moved from there): group.
        self._shared: dict[str, str] = {}
        for destination in self.destinations:
            sub_id = self.link.subscribe(destination, "client-individual", self._window)
            self._pending[sub_id] = deque()
            route = routes.route(destination)
            if route is not None and route.transport is None:
                self._shared[sub_id] = route.group
        self._turns: deque[str] = deque(self._pending)
        #: The loop's fetch against a long item's keeper thread handing back what waits: a lock
        #: only once LongJobs wraps this consumer (guard_fetch); nothing else shares a fetch.
        self._fetching: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        self._start_hot(config)
        self._hot_file: HotFile | None = hot_file
        for target in hot_file.adopt() if hot_file is not None else []:
            self.hot.adopt(target)
            self._follow(target)
            log.info("subscribed to %s, a hot site's destination of a worker gone", target)
        self._redial = Redial(self.link, self.config, "consumer")
        self.writer = SettlementWriter(
            self.link,
            flush_after=ack_flush,
            batch=ack_batch(prefetch),
            receipt_timeout=self.config.receipt_timeout,
            name="consumer settlements",
        )
        self.side = ResendLink(self.config, self.writer.poke)
        self._parking = Parking(delays, "consumer settlements") if delays is not None else None
        self.writer.start()
        # Not connected here but at the first fetch, once the worker's loop runs: the broker
        # dispatches a prefetch window as soon as we subscribe, and a window taken while the
        # worker was still starting (its control link, its other managers) sat there while the
        # other workers ran hundreds of items; a priority-9 item in it waited all that time.

    def _connect(self) -> bool:
        if not self._redial.connect():
            return False
        self.writer.void(self.link.generation)
        # Re-sends aside on ActiveMQ only: there a commit on the consuming connection held its
        # ACKs and dispatch behind a journal sync (f/b 0.55 -> 0.75 with them aside, broker CPU
        # per message -25%); RabbitMQ takes that commit in stride (f/b 0.96 without), and a
        # connection more cost its worker CPU there.  Known once connected (``flavor = "auto"``).
        self.writer.side = self.side if self.link.flavor == "activemq" else None
        # Refused re-sends parked in the shared store where delays wait there (ActiveMQ by
        # default), instead of held with their originals filling the prefetch windows.
        wanted = self.delays is not None and self.delays.wanted(self.link.flavor)
        self.writer.parking = self._parking if wanted else None
        for frames in self._pending.values():
            frames.clear()  # from the old connection: the broker redelivers them
        return True

    def filenos(self) -> list[int]:
        return [self.link.fileno()]

    def drain_wakeups(self) -> None:
        # Only once nothing waits: until then the byte in the wake-up pipe can stay, and the
        # receiver thread writes no other (one per wake-up).  Draining before every item cost a
        # write and two reads per item, each handing the GIL between the two threads.  The drain
        # still comes before the fetch that finds nothing, so no frame can slip past a wait.
        if self.link.frames.empty() and not any(self._pending[s] for s in self._turns if s not in self._held()):
            self.link.drain_wakeups()

    def _sort_incoming(self) -> None:
        frames = self.link.frames
        while not frames.empty():  # no exception per call: this runs for every item
            frame = frames.get_nowait()
            if frame.generation != self.link.generation:
                continue
            sub_id = frame.headers.get("subscription", "")
            if sub_id in self._pending:
                self._pending[sub_id].append(frame)
            elif sub_id in self._retired:
                self._late_frame(frame)
            else:
                log.warning("frame for unknown subscription %r dropped (redelivered by the broker)", sub_id)

    def _next_frame(self) -> tuple[str, Frame] | None:
        held = self._held()
        for _ in range(len(self._turns)):
            sub_id = self._turns[0]
            self._turns.rotate(-1)
            if self._pending[sub_id] and sub_id not in held:
                return sub_id, self._pending[sub_id].popleft()
        return None

    def fetch(self) -> Delivery | None:
        """The next frame as a Delivery.  Settles nothing of an item's own (that is the
        processor's, through the writer), except what is no item yet: a delayed one that came
        early goes back to wait, a producer's queue-declaring message is acked unseen."""
        if not self.link.connected and not self._connect():
            return None
        with self._fetching:
            return self._fetch()

    def guard_fetch(self) -> None:
        """Called by the one wrapper that hands back waiting frames from another thread."""
        self._fetching = threading.Lock()

    def _fetch(self) -> Delivery | None:
        self._sort_incoming()
        self._cool()  # also forgets stale counts: at most once a second, whether or not any is hot
        while (taken := self._next_frame()) is not None:
            sub_id, frame = taken
            # A producer's way to have its queue made (no item), or the original of a re-send the
            # broker confirmed, back because its ACK was lost with a connection (Superseded)
            if wire.DECLARE in frame.headers or self.writer.superseded.drop(frame.headers):
                self.writer.ack(frame.generation, frame.headers.get("ack") or frame.headers.get("message-id", ""))
                continue
            if wire.ETA in frame.headers and self._held_again(frame):
                continue
            if sub_id in self._shared and self._moved(self._shared[sub_id], frame):
                self._turns.remove(sub_id)  # a move is no turn: the shard goes on, past the flood
                self._turns.appendleft(sub_id)
                continue
            if sub_id in self._site_of:
                self.hot.used(self._site_of[sub_id])
                self._moves.served()
            return wire.to_delivery(frame.headers, frame.body, self.routes, self.default_site, frame.generation)
        self.writer.hurry()  # idle: confirm what is done now (ActiveMQ latency rose ~6x without)
        return None

    def _home(self, headers: dict[str, str]) -> str:
        """Where a frame goes back to: from a hot site's destination, its shard (see
        :meth:`Destinations.home`)."""
        return self.routes.home(headers.get("destination", ""), headers.get(wire.SITE, self.default_site))

    def _held_again(self, frame: Frame) -> bool:
        """A delayed item that came before its eta (a RabbitMQ delay past the longest holding
        queue's, or the producer's clock ahead of ours) goes back to wait the rest: re-sent with
        the ACK of this delivery in one transaction, its attempt not counted, never run early."""
        rest = wire.float_or(frame.headers[wire.ETA], 0.0) - time.time()
        if rest <= EARLY_TOLERANCE:
            return False
        headers = {k: v for k, v in frame.headers.items() if k not in wire.BROKER_HEADERS}
        destination = self._home(frame.headers)
        hold = self._due(rest)
        if hold is None and self.link.flavor == "rabbitmq" and destination.startswith("/queue/"):
            destination, hold = early_route(destination, rest, self.link.physical)  # the rest, in hops
        elif hold is None:
            destination, hold = hold_route(self.link.flavor, destination, rest, self.link.physical)
        ack_id = frame.headers.get("ack") or frame.headers.get("message-id", "")
        self._resend(frame.generation, ack_id, destination, frame.body, self.outgoing({**headers, **hold}))
        log.debug("id=%s came %.1fs early: held again", frame.headers.get(wire.ID), rest)
        return True

    def _token(self, delivery: Delivery) -> wire.FrameToken | None:
        token = delivery.token
        assert isinstance(token, wire.FrameToken)
        if token.generation != self.link.generation:
            log.warning(
                "id=%s arrived on an earlier connection: not settled here, the broker redelivers it",
                delivery.id,
            )
            return None
        return token

    def _resend_and_ack(self, delivery: Delivery, destination: str, headers: dict[str, str]) -> None:
        token = self._token(delivery)
        if token is not None:
            self._resend(token.generation, token.ack_id, destination, delivery.body, headers)

    def _resend(self, generation: int, ack_id: str, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """Send in place of ``ack_id``; a delayed one is written to the shared store first, and
        its original then acked as any other (a crash in between: it runs twice, never zero times)."""
        for to, what, how in self.place([(destination, body, headers)]):
            self.writer.resend(generation, Resend(ack_id, to, what, how))
            return
        self.writer.ack(generation, ack_id)

    def place(self, sends: list[Send]) -> list[Send]:
        """The SENDs of ``sends`` still to go to the broker: those held in the store are not."""
        if self.delays is None:
            return sends
        return self.delays.place(self.link.flavor, sends, self.link.physical)

    def _due(self, delay: float) -> dict[str, str] | None:
        """The header that holds a re-send ``delay`` seconds in the shared store (None: the broker's way)."""
        return None if self.delays is None else self.delays.due(self.link.flavor, delay)

    def ack(self, delivery: Delivery) -> None:
        token = self._token(delivery)
        if token is not None:
            self.writer.ack(token.generation, token.ack_id)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self._resend_and_ack(delivery, *self.retry_message(delivery, delay, error))

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        self._resend_and_ack(delivery, *self.defer_message(delivery, delay))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._resend_and_ack(delivery, *self.dead_letter_message(delivery, reason))

    # What each settlement sends in place of the delivery: (destination, headers).  Apart from
    # the sending, so a long item (statusq.queues.stomp.longjobs), acked before it ran, is sent
    # the same way without an ACK.

    def retry_message(self, delivery: Delivery, delay: float, error: str) -> tuple[str, dict[str, str]]:
        token = delivery.token
        assert isinstance(token, wire.FrameToken)
        headers = wire.copy_headers(
            delivery, token, **{wire.ATTEMPT: str(delivery.attempt + 1), wire.ERROR: wire.as_text(error)}
        )
        home = self.routes.home(token.destination, delivery.site)
        extra = self._due(delay)
        destination = home
        if extra is None:
            destination, extra = retry_route(self.link.flavor, home, delay, self.link.physical)
        return destination, self.outgoing({**headers, **extra})

    def defer_message(self, delivery: Delivery, delay: float) -> tuple[str, dict[str, str]]:
        """Re-sent to wait ``delay`` as a retry is, but with the same attempt number: it did not
        run (a pause holds it).  Its last error is kept, not replaced by the pause."""
        token = delivery.token
        assert isinstance(token, wire.FrameToken)
        headers = wire.copy_headers(delivery, token)
        home = self.routes.home(token.destination, delivery.site)
        held = self._due(delay)
        if held is not None:
            destination, extra = home, held
        elif self.link.flavor == "rabbitmq" and delay > 0 and home.startswith("/queue/"):
            # Not a retry's bucket rounded up: a rate limit's turn is to the interval, so the item
            # waits in shorter holding queues with its eta, and comes back within the tolerance.
            destination, extra = early_route(home, delay, self.link.physical)
            extra[wire.ETA] = f"{time.time() + delay:.3f}"
        else:
            destination, extra = retry_route(self.link.flavor, home, delay, self.link.physical)
        return destination, self.outgoing({**headers, **extra})

    def dead_letter_message(self, delivery: Delivery, reason: str) -> tuple[str, dict[str, str]]:
        token = delivery.token
        assert isinstance(token, wire.FrameToken)
        headers = wire.copy_headers(
            delivery,
            token,
            **{
                wire.ERROR: wire.as_text(reason),
                wire.ATTEMPTS: str(delivery.attempt),
                wire.ORIGINAL_DESTINATION: self.routes.home(token.destination, delivery.site),
                wire.DEAD_AT: f"{time.time():.6f}",
            },
        )
        return self.config.dead_letter_destination, self.outgoing(headers)

    def reachable(self) -> bool:
        return self.link.connected

    def counts_in_place(self) -> bool:
        # The writer holds or parks re-sends a full broker refused: a recount's copy would wait
        # there too (or cost a row of the shared store for nothing).
        return self.writer.refusing

    def release(self) -> None:
        """Hand prefetched frames back with their counts intact (a plain disconnect would make the
        broker mark them redelivered, and each would be charged an attempt).  Settlements
        recorded so far are written and confirmed first, and the writer thread stops."""
        if not self.writer.stop(self.config.receipt_timeout + 1.0):
            log.warning("settlement writer did not stop in time (what it held is redelivered)")
        if not self.link.connected:
            return
        frames = self._prefetched()
        if not frames:
            return
        try:
            with self.link.transaction() as tx:
                for frame in frames:
                    destination, body, headers = self._given_back(frame)
                    self.link.send_in(tx, destination, body, headers)
                    self.link.ack_in(tx, frame.headers.get("ack", ""))
            log.info("released %d prefetched item(s) back to the broker", len(frames))
        except QueueError as exc:
            log.warning("could not release prefetched items (the broker redelivers them): %s", exc)

    def give_back_waiting(self, older_than: float) -> int:
        """Hand back the frames fetched ahead that have waited ``older_than`` seconds or more
        (since a call first saw them), counts intact, with the next settlements; how many.

        From another thread (statusq.queues.stomp.longjobs), while a long item runs: on RabbitMQ
        a frame left unacked past the consumer timeout makes the broker close the channel and
        take back everything the worker holds.  The broker sends others in their place (the
        window is freed): those go back in their turn, cycling at most a prefetch window."""
        now = time.monotonic()
        back: list[Frame] = []
        with self._fetching:
            self._sort_incoming()
            for frames in self._pending.values():
                keep = [f for f in frames if not f.seen or now - f.seen < older_than]
                back += [f for f in frames if f.seen and now - f.seen >= older_than]
                frames.clear()
                frames.extend(keep)
                for frame in keep:
                    frame.seen = frame.seen or now
        for frame in back:
            if frame.generation == self.link.generation:
                ack_id = frame.headers.get("ack") or frame.headers.get("message-id", "")
                self.writer.resend(frame.generation, Resend(ack_id, *self._given_back(frame)))
        if back:
            log.info("%d item(s) fetched ahead handed back: a long item keeps this worker busy", len(back))
        return len(back)

    def _prefetched(self) -> list[Frame]:
        self._sort_incoming()
        frames = [f for q in self._pending.values() for f in q if f.generation == self.link.generation]
        for q in self._pending.values():
            q.clear()
        return frames

    def _given_back(self, frame: Frame) -> tuple[str, bytes, dict[str, str]]:
        headers = {k: v for k, v in frame.headers.items() if k not in wire.BROKER_HEADERS}
        return self._home(frame.headers), frame.body, self.outgoing(headers)

    def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            self.release()
        self.link.close()
        self.side.close()
