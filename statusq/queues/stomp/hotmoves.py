"""Hot sites on one worker's STOMP consumer: a flooding site's items moved off the shared
destinations to the site's own, which the worker then subscribes to and serves in turn.

Apart from :mod:`statusq.queues.stomp.consumer` (fetching and settling) because it is a job of
its own inside fetching, with subscriptions that come and go: a move re-sends an item with the
ACK of its delivery, a site's own destination is subscribed to, and dropped once it cools.  The
counting itself (which site is hot, when it cools, how moves and turns alternate) is pure logic in
:mod:`statusq.queues.stomp.hot`; this is what the consumer does with it.  A mixin, not an object
of its own: the moves take from and add to the consumer's subscriptions and turns.
"""

from __future__ import annotations

import logging
from collections import deque

from statusq.config import StompConfig
from statusq.queues.stomp import wire
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.hot import HotSites, MovesFirst
from statusq.queues.stomp.hotfile import HotFile
from statusq.queues.stomp.link import Frame, StompLink
from statusq.queues.stomp.settler import Resend, SettlementWriter

# The name these messages logged under before they left statusq.queues.stomp.consumer.
log = logging.getLogger("statusq.queues.stomp.consumer")

#: A hot site's own destination waits while moves go on (the last within this: a prefetch
#: window's round trip to the broker took up to 0.14 s on a busy test machine), one turn per
#: this many moves (:class:`~statusq.queues.stomp.hot.MovesFirst`).
MOVE_GAP = 0.25
MOVES_PER_TURN = 100


def _came_back(headers: dict[str, str]) -> bool:
    """A retried or deferred item back from its wait (the shared store's relay, ActiveMQ's
    scheduler, a RabbitMQ holding queue): not counted nor moved.  A paused site's few items came
    back again and again and counted as a flood; with them moved, the pause test on ActiveMQ
    failed about one run in two (held items never came back after a restart; not understood,
    see the hot-sites report)."""
    return wire.RELAYED in headers or "scheduledJobId" in headers or "x-death" in headers


class HotSiteMoves:
    """The hot-site half of :class:`~statusq.queues.stomp.consumer.StompConsumer`."""

    # The consumer's own, set in its __init__: what a move reads and changes.
    link: StompLink
    writer: SettlementWriter
    routes: Destinations
    default_site: str
    outgoing: wire.Outgoing
    _window: dict[str, str]
    _pending: dict[str, deque[Frame]]
    _turns: deque[str]
    _hot_file: HotFile | None

    def _start_hot(self, config: StompConfig) -> None:
        """No hot site yet (:mod:`statusq.queues.stomp.hot`)."""
        self.hot = HotSites(
            after=config.hot_after, window=config.hot_window, cool=config.hot_cool, most=config.hot_sites
        )
        self._site_subs: dict[str, str] = {}  # a hot site's destination: its subscription
        self._site_of: dict[str, str] = {}  # and back
        self._moves = MovesFirst(gap=MOVE_GAP, per_turn=MOVES_PER_TURN)
        self._retired: set[str] = set()  # subscriptions of cooled sites, ended on the broker
        self._hot_file = None

    def _held(self) -> dict[str, str]:
        """The subscriptions that wait now (hot sites' own, while moves go on)."""
        return self._site_of if self._site_of and self._moves.holding() else {}

    def _moved(self, group: str, frame: Frame) -> bool:
        """A hot site's item from a shared destination goes to the site's own, re-sent with the
        ACK of this delivery in one transaction (a crash in between: the broker redelivers the
        original), every header kept, its attempt not counted.  Not a redelivered one: that
        was an attempt, and the listener counts it first."""
        headers = frame.headers
        site = headers.get(wire.SITE)
        if not site or headers.get("redelivered") == "true" or _came_back(headers):
            return False
        if site == self.default_site:
            # What a single-site deployment sends (no site given): nobody to be fair to, and a
            # move costs a SEND and a second delivery per item.
            return False
        if self.writer.refusing:
            # The broker is full and refuses re-sends (the writer holds or parks them): a move
            # would wait there with the item unrun, and an ACK is what frees the broker's room
            return False
        target = self.routes.for_site(group, site)
        if not self.hot.arrived(target):
            return False
        if target not in self._site_subs:
            self._follow(target)
            self._remember()
            log.info("site %s is hot: its items go to %s, taken in turn with the shards", site, target)
        headers = {k: v for k, v in frame.headers.items() if k not in wire.BROKER_HEADERS}
        ack_id = frame.headers.get("ack") or frame.headers.get("message-id", "")
        self.writer.resend(frame.generation, Resend(ack_id, target, frame.body, self.outgoing(headers)))
        self._moves.moved()
        return True

    def _follow(self, target: str) -> None:
        sub_id = self.link.subscribe(target, "client-individual", self._window)
        self._site_subs[target] = sub_id
        self._site_of[sub_id] = target
        self._pending[sub_id] = deque()
        self._turns.append(sub_id)

    def _remember(self) -> None:
        if self._hot_file is not None:
            self._hot_file.write(list(self._site_subs))

    def _cool(self) -> None:
        """Unsubscribe from hot sites idle for ``hot_cool`` (none with items still in hand)."""
        for target in self.hot.cooled(lambda t: bool(self._pending[self._site_subs[t]])):
            sub_id = self._site_subs.pop(target)
            del self._site_of[sub_id]
            del self._pending[sub_id]
            self._turns.remove(sub_id)
            self._retired.add(sub_id)
            self.link.unsubscribe(sub_id)
            self._remember()
            log.info("hot site's destination %s idle for %gs: unsubscribed", target, self.hot.cool)

    def _late_frame(self, frame: Frame) -> None:
        """A frame the broker sent before it saw the unsubscribe of a cooled site: not ACKed
        (RabbitMQ 3.10 answers an ACK for a cancelled subscription with an ERROR frame, which
        fails every receipt pending on the connection).  ActiveMQ redelivers a removed subscription's
        unacked messages to the other consumers at once (counted as an attempt); RabbitMQ keeps it unacked until this
        connection closes, then redelivers it (counted as an attempt).  Rare: a cooled site's
        destination had nothing for ``hot_cool``, and this needs an item moved there just then."""
        log.info(
            "id=%s came for %s after its site cooled: left to the broker to redeliver",
            frame.headers.get(wire.ID),
            frame.headers.get("destination"),
        )
