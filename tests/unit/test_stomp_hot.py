"""Hot sites on STOMP (issue #17): the window and threshold, moves first, the site destinations
and their RabbitMQ arguments, and what a worker's consumer does with a hot site's item: pure
logic with a fake clock, and the consumer with its link and writer replaced by fakes."""

from __future__ import annotations

import json
import os
import threading
from collections import deque
from typing import Any

import pytest

from statusq.config import StompConfig
from statusq.defaults import STOMP_SHARDS
from statusq.queues.stomp import wire
from statusq.queues.stomp.consumer import MOVES_PER_TURN, StompConsumer
from statusq.queues.stomp.delays import site_queue_args
from statusq.queues.stomp.destinations import Destinations, Route, shard_of, site_slug
from statusq.queues.stomp.hot import HotSites, MovesFirst
from statusq.queues.stomp.hotfile import HotFile
from statusq.queues.stomp.link import Frame
from tests.unit.test_stomp_enqueue import BASE, FakeConsumerLink, FakeWriter, rabbit_physical


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hot_sites(clock: Clock, *, after: int = 3, window: float = 10.0, cool: float = 60.0, most: int = 2) -> HotSites:
    return HotSites(after=after, window=window, cool=cool, most=most, clock=clock)


# -- the window and the threshold ------------------------------------------------------------


def test_a_site_is_hot_from_its_nth_item_within_the_window() -> None:
    hot = hot_sites(Clock())
    assert [hot.arrived("a") for _ in range(5)] == [False, False, True, True, True]
    assert "a" in hot and hot.arrived("b") is False


def test_items_spread_wider_than_the_window_do_not_make_a_site_hot() -> None:
    clock = Clock()
    hot = hot_sites(clock)
    seen = []
    for _ in range(10):
        seen.append(hot.arrived("a"))
        clock.now += 6.0  # three items span 12 s, the window is 10
    assert not any(seen)


def test_a_burst_after_a_quiet_spell_counts_from_its_own_items() -> None:
    clock = Clock()
    hot = hot_sites(clock)
    hot.arrived("a"), hot.arrived("a")
    clock.now += 30.0
    assert [hot.arrived("a") for _ in range(3)] == [False, False, True]


def test_no_more_hot_sites_than_the_bound() -> None:
    hot = hot_sites(Clock(), most=2)
    for site in "abc":
        for _ in range(3):
            hot.arrived(site)
    assert "a" in hot and "b" in hot and "c" not in hot
    assert hot.arrived("c") is False  # stays in its shard, as without hot sites


def test_hot_after_zero_turns_it_off() -> None:
    hot = hot_sites(Clock(), after=0)
    assert not any(hot.arrived("a") for _ in range(1000))


def test_a_hot_site_cools_once_idle_unless_items_are_still_in_hand() -> None:
    clock = Clock()
    hot = hot_sites(clock, cool=60.0)
    for site in "ab":
        for _ in range(3):
            hot.arrived(site)
    clock.now += 30.0
    hot.used("a")  # taken from its own destination: not idle
    clock.now += 31.0
    assert hot.cooled(busy=lambda key: False) == ["b"]
    assert "a" in hot and "b" not in hot
    clock.now += 60.0
    assert hot.cooled(busy=lambda key: key == "a") == []  # still items in hand: stays hot
    clock.now += 60.0
    assert hot.cooled(busy=lambda key: False) == ["a"] and len(hot) == 0


def test_cooling_looks_at_most_once_a_second_and_forgets_stale_counts() -> None:
    clock = Clock()
    hot = hot_sites(clock, cool=5.0, window=10.0)
    hot.arrived("a"), hot.arrived("a")  # two of three: counted, not hot
    clock.now += 11.0
    assert hot.cooled(busy=lambda key: False) == []
    assert hot.arrived("a") is False  # the two before were forgotten: one of three again
    for _ in range(3):
        hot.arrived("b")
    clock.now += 5.5
    assert hot.cooled(busy=lambda key: False) == ["b"]
    for _ in range(3):
        hot.arrived("b")
    clock.now += 4.8
    assert hot.cooled(busy=lambda key: False) == []  # idle 4.8 s of 5
    clock.now += 0.5  # idle 5.3 s, but the last look was half a second ago
    assert hot.cooled(busy=lambda key: False) == []
    clock.now += 0.5
    assert hot.cooled(busy=lambda key: False) == ["b"]


# -- moves first ---------------------------------------------------------------------------------


def test_a_hot_sites_destination_waits_while_moves_go_on_one_turn_per_n_moves() -> None:
    clock = Clock()
    moves = MovesFirst(gap=0.25, per_turn=3, clock=clock)
    assert moves.holding() is False  # nothing moved yet
    moves.moved()
    assert moves.holding() is True
    moves.moved(), moves.moved()
    assert moves.holding() is False  # three moves: its turn
    moves.served()
    assert moves.holding() is True
    clock.now += 0.3  # no move for longer than the gap: every turn is its own again
    assert moves.holding() is False


# -- destinations ----------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["busy.example", "a/b c%d*>", "ä" * 300, "x" * 64 + "tail"])
def test_a_site_destination_is_safe_for_both_brokers_and_bounded(site: str) -> None:
    slug = site_slug(site)
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in slug)
    assert len(slug) <= 64 + 9


def test_sites_that_escape_alike_get_destinations_of_their_own() -> None:
    assert site_slug("a/b") != site_slug("a_b") != site_slug("a b")
    assert site_slug("x" * 64 + "1") != site_slug("x" * 64 + "2")


def test_a_site_destination_routes_to_its_group_and_goes_home_to_the_sites_shard() -> None:
    routes = Destinations(BASE, [], shards=STOMP_SHARDS)
    own = routes.for_site("main", "busy.example")
    assert own == f"{BASE}main/site-{site_slug('busy.example')}"
    assert routes.route(own) == Route("main")
    assert routes.home(own, "busy.example") == f"{BASE}main/shard-{shard_of('busy.example', STOMP_SHARDS)}"
    shard = routes.for_group("main", "busy.example")
    assert routes.home(shard, "busy.example") == shard  # any other destination: itself


def test_on_rabbitmq_a_site_queue_sends_what_waits_too_long_back_to_its_group() -> None:
    own = Destinations(BASE, []).for_site("main", "busy.example")
    args = site_queue_args(own, basename=BASE, hold=600.0, physical=rabbit_physical)
    assert args["x-message-ttl"] == "600000"
    assert int(args["x-expires"]) > int(args["x-message-ttl"])  # deleted only once emptied
    assert (args["x-dead-letter-exchange"], args["x-dead-letter-routing-key"]) == ("", "statusq.main")
    assert site_queue_args(BASE + "main/shard-1", basename=BASE, hold=600.0, physical=rabbit_physical) == {}


# -- the consumer --------------------------------------------------------------------------------


class SubscribingLink(FakeConsumerLink):
    def __init__(self, flavor: str, frames: list[Frame]) -> None:
        super().__init__(flavor, frames)
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []

    def subscribe(self, destination: str, ack: str, headers: dict[str, str]) -> str:
        self.subscribed.append(destination)
        return f"sub-{len(self.subscribed)}"

    def unsubscribe(self, sub_id: str) -> None:
        self.unsubscribed.append(sub_id)


def item_frame(n: int, site: str, **extra: str) -> Frame:
    headers = {
        "destination": BASE + "main",  # the group's unsharded queue: a shared destination
        "subscription": "sub-0",
        "ack": f"ack-{n}",
        "message-id": f"m-{n}",
        "redelivered": "false",
        **wire.new_headers(site, "distrib", "application/json"),
        **extra,
    }
    return Frame(7, headers, b'{"n": %d}' % n)


def hot_consumer(flavor: str, *frames: Frame, after: int = 3) -> tuple[StompConsumer, FakeWriter, SubscribingLink]:
    consumer = object.__new__(StompConsumer)
    writer, link = FakeWriter(), SubscribingLink(flavor, list(frames))
    consumer.link = link  # type: ignore[assignment]
    consumer.writer = writer  # type: ignore[assignment]
    consumer.delays = None  # delays the broker's way (tests/unit/test_store_delays.py: the store's)
    consumer.routes = Destinations(BASE, [])
    consumer.default_site = "default"
    consumer.outgoing = wire.delivery_mode(True)
    consumer._window = {}
    consumer._pending = {"sub-0": deque()}
    consumer._turns = deque(["sub-0"])
    consumer._fetching = threading.Lock()
    consumer._shared = {"sub-0": "main"}
    consumer._start_hot(StompConfig(hot_after=after))
    return consumer, writer, link


def fetch_all(consumer: StompConsumer) -> list[Any]:
    out = []
    while (delivery := consumer.fetch()) is not None:
        out.append(delivery)
    return out


def test_a_hot_sites_item_is_moved_with_every_header_and_its_attempt() -> None:
    # Given three items of a site (the third makes it hot), the third on its 4th attempt, with a
    # priority, a trace header and a user header; then an item of another site
    third = item_frame(
        3, "busy.example", **{wire.ATTEMPT: "4", "priority": "7", "traceparent": "00-ab-cd-01", "x-mine": "1"}
    )
    frames = [item_frame(1, "busy.example"), item_frame(2, "busy.example"), third, item_frame(4, "calm.example")]
    consumer, writer, link = hot_consumer("rabbitmq", *frames)

    # When the worker fetches
    got = fetch_all(consumer)

    # Then the first two and the other site's ran here; the third was moved, not handed out,
    # with the ACK of its delivery, to the site's own destination, which the worker subscribed to
    own = Destinations(BASE, []).for_site("main", "busy.example")
    assert [d.token.ack_id for d in got] == ["ack-1", "ack-2", "ack-4"]
    [(generation, resend)] = writer.resends
    assert (generation, resend.ack_id, resend.destination, resend.body) == (7, "ack-3", own, third.body)
    kept = {k: v for k, v in third.headers.items() if k not in wire.BROKER_HEADERS}
    assert {k: v for k, v in resend.headers.items() if k != "persistent"} == kept
    assert resend.headers[wire.ATTEMPT] == "4"  # no attempt charged
    assert link.subscribed == [own]


def test_while_the_writer_holds_re_sends_a_hot_sites_items_run_here() -> None:
    # Given a broker full enough that the writer holds re-sends (their originals unacked)
    frames = [item_frame(n, "busy.example") for n in range(5)]
    consumer, writer, link = hot_consumer("activemq", *frames)
    writer.holds.hold(7, [], 0.0, why="refused re-sends as full")

    # Then a hot site's items are not moved (the move would wait there, the item unrun): each
    # runs here, and its ACK is what frees the broker's room
    assert [d.token.ack_id for d in fetch_all(consumer)] == [f"ack-{n}" for n in range(5)]
    assert writer.resends == [] and link.subscribed == []


def test_the_default_site_is_never_moved() -> None:
    # Given items of the default site (what a single-site deployment sends), past the threshold
    consumer, writer, link = hot_consumer("rabbitmq", *[item_frame(n, "default") for n in range(6)])

    # Then every one is handed out here: nobody to be fair to, and a move costs a send
    assert [d.token.ack_id for d in fetch_all(consumer)] == [f"ack-{n}" for n in range(6)]
    assert writer.resends == [] and link.subscribed == []


def test_a_move_is_no_turn_the_shared_destination_goes_on() -> None:
    # Given a site about to be hot, and two subscriptions: the shard with the site's items and then
    # another site's, and a second destination with an item
    consumer, writer, _link = hot_consumer("activemq", after=2)
    consumer.hot.arrived(Destinations(BASE, []).for_site("main", "busy.example"))  # one of two seen
    for n in range(3):
        consumer._pending["sub-0"].append(item_frame(n, "busy.example"))
    consumer._pending["sub-0"].append(item_frame(9, "calm.example"))
    consumer._pending["sub-x"] = deque([item_frame(10, "other.example")])
    consumer._turns.append("sub-x")

    # When the worker fetches once: the shard's first turn moves all three, then hands out the
    # item behind them; the other subscription comes next
    first = consumer.fetch()
    assert first is not None and first.token.ack_id == "ack-9"
    assert len(writer.resends) == 3
    second = consumer.fetch()
    assert second is not None and second.token.ack_id == "ack-10"


def test_a_redelivered_item_of_a_hot_site_is_not_moved() -> None:
    # It was an attempt (its worker died holding it): the listener counts it first
    frames = [item_frame(1, "busy.example"), item_frame(2, "busy.example", redelivered="true")]
    consumer, writer, _ = hot_consumer("rabbitmq", *frames, after=1)
    got = fetch_all(consumer)
    assert [d.token.ack_id for d in got] == ["ack-2"] and got[0].redelivered
    assert [r.ack_id for _, r in writer.resends] == ["ack-1"]


@pytest.mark.parametrize(
    "waited", [{wire.RELAYED: "1"}, {"scheduledJobId": "ID:x:1:1:1"}, {"x-death": "[...]"}], ids=str
)
def test_an_item_back_from_its_wait_is_neither_counted_nor_moved(waited: dict[str, str]) -> None:
    # A paused site's few items come back from their waits again and again (the shared store's
    # relay, ActiveMQ's scheduler, a RabbitMQ holding queue): not a flood
    frames = [item_frame(n, "busy.example", **waited) for n in range(4)]
    consumer, writer, link = hot_consumer("activemq", *frames, after=1)
    assert [d.token.ack_id for d in fetch_all(consumer)] == [f"ack-{n}" for n in range(4)]
    assert writer.resends == [] and link.subscribed == []
    # and the mark is the relay's alone: never copied onto a re-send
    assert wire.RELAYED in wire.BROKER_HEADERS


def test_the_hot_sites_destination_waits_while_moves_go_on() -> None:
    # Given a hot site with items in its own destination, and more of its items in the shard
    consumer, _writer, link = hot_consumer("rabbitmq", item_frame(0, "busy.example"), after=1)
    assert consumer.fetch() is None  # moved: the site is hot, subscribed
    own_sub = "sub-1"
    for n in range(1, 3):
        frame = item_frame(n, "busy.example")
        frame.headers["subscription"] = own_sub
        frame.headers["destination"] = link.subscribed[0]
        consumer._pending[own_sub].append(frame)

    # When the worker fetches while it has just moved: the site's own waits (per_turn moves)
    assert consumer.fetch() is None
    for n in range(10, 10 + MOVES_PER_TURN):
        consumer._pending["sub-0"].append(item_frame(n, "busy.example"))
    delivery = consumer.fetch()  # enough moves: one turn of its own
    assert delivery is not None and delivery.token.ack_id == "ack-1"
    assert consumer.fetch() is None


def test_a_retry_of_an_item_from_a_site_destination_goes_back_to_its_shard() -> None:
    consumer, writer, link = hot_consumer("activemq", item_frame(0, "busy.example"), after=1)
    consumer.routes = Destinations(BASE, [], shards=STOMP_SHARDS)
    consumer.fetch()
    frame = item_frame(1, "busy.example")
    frame.headers.update(subscription="sub-1", destination=link.subscribed[0])
    consumer._pending["sub-1"].append(frame)
    consumer._moves.served()  # not holding
    consumer._moves._last_move = float("-inf")
    delivery = consumer.fetch()
    assert delivery is not None
    consumer.retry(delivery, 5.0, "boom")
    home = f"{BASE}main/shard-{shard_of('busy.example', STOMP_SHARDS)}"
    assert writer.resends[-1][1].destination == home
    assert writer.resends[-1][1].headers[wire.ATTEMPT] == "2"


def test_a_cooled_sites_subscription_ends_and_a_late_frame_is_left_to_the_broker() -> None:
    # Given a hot site (its destination subscribed as sub-1), on a fake clock
    clock = Clock()
    consumer, writer, link = hot_consumer("rabbitmq", item_frame(0, "busy.example"), after=1)
    consumer.hot = HotSites(after=1, window=10.0, cool=60.0, most=16, clock=clock)
    assert consumer.fetch() is None and link.subscribed and len(writer.resends) == 1

    # When nothing of it comes for hot_cool
    clock.now += 61.0
    assert consumer.fetch() is None

    # Then the worker unsubscribed; a frame the broker sent for it just before is neither run
    # nor ACKed (the broker redelivers it)
    assert link.unsubscribed == ["sub-1"] and "sub-1" not in consumer._turns
    late = item_frame(1, "busy.example")
    late.headers.update(subscription="sub-1", destination=link.subscribed[0])
    link.frames.items.append(late)
    assert consumer.fetch() is None
    assert len(writer.resends) == 1 and writer.acks == []


def test_a_starting_worker_adopts_the_hot_sites_of_workers_gone(tmp_path: Any) -> None:
    # Given the files of a dead worker (no such pid), of a live one (this process) and junk
    folder = tmp_path / "hot-sites"
    HotFile(folder, pid=2**22 + 12345).write(["/queue/statusq/main/site-a-1"])
    HotFile(folder, pid=os.getpid()).write(["/queue/statusq/main/site-b-2"])
    (folder / "junk.json").write_text("not json")

    # When a new worker starts
    mine = HotFile(folder, pid=2**22 + 54321)
    adopted = mine.adopt()

    # Then it took the dead worker's (now in its own file, the dead one's removed), not the
    # live one's
    assert adopted == ["/queue/statusq/main/site-a-1"]
    assert json.loads(mine.path.read_text()) == adopted
    names = sorted(p.name for p in folder.glob("*.json"))
    assert names == sorted([f"{os.getpid()}.json", f"{2**22 + 54321}.json", "junk.json"])


def test_a_worker_subscribes_to_adopted_hot_sites(tmp_path: Any) -> None:
    folder = tmp_path / "hot-sites"
    HotFile(folder, pid=2**22 + 12345).write(["/queue/statusq/main/site-a-1"])
    consumer, _, link = hot_consumer("activemq")
    consumer._hot_file = HotFile(folder, pid=2**22 + 1)
    for target in consumer._hot_file.adopt():
        consumer.hot.adopt(target)
        consumer._follow(target)
    assert link.subscribed == ["/queue/statusq/main/site-a-1"]
    assert "/queue/statusq/main/site-a-1" in consumer.hot
