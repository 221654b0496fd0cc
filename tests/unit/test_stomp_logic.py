"""Pure logic of the STOMP backend and the control channel: no broker needed."""

from __future__ import annotations

import uuid
import zlib

import pytest
from stomp.protocol import Protocol12
from stomp.utils import convert_frame, pack

from statusq.commands import accept, parse_command
from statusq.config import Config
from statusq.errors import DataError, Unsupported
from statusq.item import Delivery
from statusq.queues.base import Admin, Capability
from statusq.queues.stomp import StompQueueManager, wire
from statusq.queues.stomp.delays import BUCKETS_MS, bucket_ms, queue_declare_args, retry_route
from statusq.queues.stomp.destinations import Destinations, Route, shard_of
from statusq.queues.stomp.encode import ack_frame, encode_frame
from statusq.queues.stomp.refusals import declare_refusal

BASE = "/queue/statusq/"


@pytest.fixture
def dests() -> Destinations:
    return Destinations(BASE, ["main/distrib", "main/distrib/big.example.org", "xmpp/xmppout"])


def test_items_go_to_their_group_unless_broken_out(dests: Destinations) -> None:
    assert dests.for_item("main", "ostatus", "a.example") == BASE + "main"
    assert dests.for_item("main", "distrib", "a.example") == BASE + "main/distrib"
    assert dests.for_item("main", "distrib", "big.example.org") == BASE + "main/distrib/big.example.org"
    assert dests.for_item("xmpp", "xmppout", "a.example") == BASE + "xmpp/xmppout"


def test_a_worker_subscribes_to_its_groups_and_their_breakouts(dests: Destinations) -> None:
    assert dests.for_groups({"main"}) == [BASE + "main", BASE + "main/distrib", BASE + "main/distrib/big.example.org"]
    assert dests.for_groups({"xmpp"}) == [BASE + "xmpp", BASE + "xmpp/xmppout"]


def test_items_of_a_group_are_spread_over_its_shards_by_site() -> None:
    # Given four shards per group (the default), and a breakout
    dests = Destinations(BASE, ["main/distrib/big.example.org"], shards=4)
    sites = [f"site{n}.example" for n in range(200)]
    # Then a site's items always go to one shard, the same whatever the process (CRC-32)...
    assert dests.for_item("main", "ostatus", "a.example") == BASE + f"main/shard-{shard_of('a.example', 4)}"
    assert shard_of("a.example", 4) == zlib.crc32(b"a.example") % 4
    # ...every shard gets sites, and a breakout still wins
    assert {dests.for_item("main", "ostatus", s) for s in sites} == {BASE + f"main/shard-{n}" for n in range(4)}
    assert dests.for_item("main", "distrib", "big.example.org") == BASE + "main/distrib/big.example.org"
    # And a worker subscribes to the unsharded queue (older producers'), every shard, the breakouts
    assert dests.for_groups({"main"}) == [
        BASE + "main",
        *[BASE + f"main/shard-{n}" for n in range(4)],
        BASE + "main/distrib/big.example.org",
    ]
    # And a shard's items are the group's
    assert dests.route(BASE + "main/shard-3") == Route("main")
    assert dests.route(BASE + "main/shard-x") is None


def test_one_shard_is_the_unsharded_layout() -> None:
    dests = Destinations(BASE, [], shards=1)
    assert dests.for_item("main", "ostatus", "a.example") == BASE + "main"
    assert dests.for_groups({"main"}) == [BASE + "main"]


def test_a_destination_says_what_it_can(dests: Destinations) -> None:
    assert dests.route(BASE + "main") == Route("main")
    assert dests.route(BASE + "main/distrib/big.example.org") == Route("main", "distrib", "big.example.org")
    assert dests.route(BASE + "main/unknown/x") is None
    assert dests.route("/queue/elsewhere") is None


def frame_headers(**extra: str) -> dict[str, str]:
    return {"destination": BASE + "main", "message-id": "ID:1", "ack": "ID:1-ack", "subscription": "sub-0", **extra}


def test_statusq_headers_make_the_delivery(dests: Destinations) -> None:
    headers = frame_headers(**wire.new_headers("a.example", "distrib", "application/json"), **{"x-app": "1"})
    delivery = wire.to_delivery(headers, b"{}", dests, "default", generation=3)
    assert (delivery.site, delivery.transport, delivery.attempt) == ("a.example", "distrib", 1)
    assert delivery.id == headers[wire.ID] and delivery.content_type == "application/json"
    assert delivery.headers == {"x-app": "1"}, "broker and statusq headers are not the user's"
    assert isinstance(delivery.token, wire.FrameToken)
    assert (delivery.token.ack_id, delivery.token.generation) == ("ID:1-ack", 3)


def test_only_the_producers_own_headers_are_the_items(dests: Destinations) -> None:
    plain = frame_headers(**wire.new_headers("a.example", "distrib", "application/json"), priority="4")
    assert wire.to_delivery(plain, b"{}", dests, "default", generation=1).headers == {}
    later = {**plain, "statusq-from-a-newer-version": "x", "x-trace": "abc"}
    assert wire.to_delivery(later, b"{}", dests, "default", generation=1).headers == {"x-trace": "abc"}
    # A site header without a transport: the breakout destination still names the transport
    half = frame_headers(destination=BASE + "main/distrib", **{wire.SITE: "b.example"})
    delivery = wire.to_delivery(half, b"{}", dests, "default", generation=1)
    assert (delivery.transport, delivery.site) == ("distrib", "b.example")


def test_a_foreign_message_takes_transport_and_site_from_its_breakout(dests: Destinations) -> None:
    headers = frame_headers(destination=BASE + "main/distrib/big.example.org", timestamp="1700000000000")
    delivery = wire.to_delivery(headers, b"raw", dests, "default", generation=1)
    assert (delivery.transport, delivery.site) == ("distrib", "big.example.org")
    assert delivery.content_type == "application/octet-stream", "no content type: bytes"
    assert delivery.enqueued_at == 1_700_000_000.0 and delivery.id == "ID:1"


def test_garbage_headers_never_raise(dests: Destinations) -> None:
    headers = frame_headers(**{wire.ATTEMPT: "many", wire.ENQUEUED_AT: "yesterday", "priority": "urgent"})
    delivery = wire.to_delivery(headers, b"", dests, "default", generation=1)
    assert delivery.attempt == 1 and delivery.priority is None and delivery.transport == ""


def test_a_resend_keeps_user_headers_and_drops_the_brokers(dests: Destinations) -> None:
    headers = frame_headers(**wire.new_headers("a.example", "distrib", "application/json"), **{"x-app": "1"})
    delivery = wire.to_delivery({**headers, "redelivered": "true"}, b"{}", dests, "default", generation=1)
    assert isinstance(delivery.token, wire.FrameToken)
    out = wire.copy_headers(delivery, delivery.token, **{wire.ATTEMPT: "2"})
    assert out["x-app"] == "1" and out[wire.ATTEMPT] == "2" and out[wire.SITE] == "a.example"
    assert not {"message-id", "ack", "subscription", "destination", "redelivered"} & set(out)


def test_long_errors_are_cut_to_fit_a_header() -> None:
    text = wire.as_text("line one\nline two " + "x" * 5000)
    assert "\n" not in text and len(text) == wire.MAX_ERROR and text.endswith("...")


def test_retry_delays_per_broker() -> None:
    identity = str
    assert retry_route("activemq", BASE + "main", 1.5, identity) == (BASE + "main", {"AMQ_SCHEDULED_DELAY": "1500"})
    assert retry_route("activemq", BASE + "main", 0, identity) == (BASE + "main", {})
    dest, headers = retry_route("rabbitmq", "/queue/statusq/main", 1.5, lambda d: "/queue/statusq.main")
    assert dest == "/queue/statusq/main.delay.2000"
    assert headers == {
        "x-message-ttl": "2000",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "statusq.main",
    }


@pytest.mark.parametrize(
    ("delay", "bucket"), [(0.001, 50), (0.05, 50), (0.3, 500), (2.0, 2000), (99999, BUCKETS_MS[-1])]
)
def test_rabbitmq_delays_round_up_to_a_bucket(delay: float, bucket: int) -> None:
    assert bucket_ms(delay) == bucket


def test_control_commands_parse_or_say_what_is_wrong() -> None:
    assert str(parse_command("update-site example.org")) == "update-site example.org"
    assert parse_command("  shutdown ").command == "shutdown"
    for bad, reason in [
        ("", "unknown control command"),
        ("format-disk", "unknown control command"),
        ("update-site", "takes one site name"),
        ("remove-site a b", "takes one site name"),
        ("remove-site ../etc", "takes one site name"),
        ("reload now", "takes no arguments"),
    ]:
        with pytest.raises(DataError, match=reason):
            parse_command(bad)


def test_control_messages_are_accepted_only_from_the_channel() -> None:
    channel = "/topic/statusq.control"
    assert accept({"destination": channel}, b"reload", channel=channel, secret=None).command == "reload"
    with pytest.raises(DataError, match="not the control channel"):
        accept({"destination": "/queue/x"}, b"reload", channel=channel, secret=None)
    with pytest.raises(DataError, match="UTF-8"):
        accept({"destination": channel}, b"\xff\xfe", channel=channel, secret=None)
    with pytest.raises(DataError, match="not the control channel"):
        accept({"destination": channel}, b"reload", channel=None, secret=None)


def test_a_delivery_from_an_earlier_connection_is_recognised() -> None:
    delivery = Delivery("1", "s", "t", b"", "application/json", {}, 1, 0.0, token=wire.FrameToken("a", "s", "d", {}, 1))
    assert isinstance(delivery.token, wire.FrameToken) and delivery.token.generation == 1


class Capture:
    """A transport for stomp.py's Protocol12 that keeps the bytes it would put on the wire."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def set_listener(self, name: str, listener: object) -> None:
        pass

    def transmit(self, frame: object) -> None:
        self.sent.append(pack(convert_frame(frame)))


@pytest.mark.parametrize(
    "ack_id",
    ["ID:host-40941-1700000000000-3:1:1:1:17", "T_sub-0@@session-Qx@@12", "odd\\id:with\nnew\rlines"],
)
def test_batched_acks_are_the_frames_stomp_py_sends_for_one(ack_id: str) -> None:
    # What Protocol12.ack(id) hands its transport, as bytes on the wire (escapes included)
    capture = Capture()
    Protocol12(capture).ack(ack_id)
    sent = capture.sent

    assert ack_frame(ack_id) == sent[0]


def test_the_broker_redelivered_flag_reaches_the_delivery(dests: Destinations) -> None:
    headers = frame_headers(**wire.new_headers("a.example", "distrib", "application/json"))
    assert wire.to_delivery(headers, b"{}", dests, "default", generation=1).redelivered is False
    again = {**headers, "redelivered": "true"}
    assert wire.to_delivery(again, b"{}", dests, "default", generation=1).redelivered is True


def test_a_retry_without_delay_goes_straight_back_on_both_brokers() -> None:
    # The redelivery recount re-sends with no delay: no scheduler header, no holding queue
    for flavor in ("activemq", "rabbitmq"):
        assert retry_route(flavor, BASE + "main", 0.0, lambda d: "/queue/statusq.main") == (BASE + "main", {})


def test_transaction_frames_are_the_frames_stomp_py_sends() -> None:
    # What Protocol12 hands its transport for BEGIN, SEND, ACK and COMMIT in a transaction,
    # compared parsed (stomp.py sorts the headers; the broker does not care about their order)
    from stomp.utils import parse_frame

    headers = {"statusq-error": "ValueError: a:b\nc\\d", "x-app": "1", "persistent": "true"}
    body = b'{"n": 1}'
    capture = Capture()
    sent = capture.sent
    protocol = Protocol12(capture, auto_content_length=True)
    protocol.begin("tx1")
    protocol.send(BASE + "main", body, headers={**headers, "transaction": "tx1"})
    protocol.ack("ID:host-1:2:3", transaction="tx1")
    protocol.commit("tx1", headers={"receipt": "r1"})

    ours = [
        encode_frame("BEGIN", {"transaction": "tx1"}),
        encode_frame("SEND", {**headers, "destination": BASE + "main", "transaction": "tx1"}, body),
        encode_frame("ACK", {"id": "ID:host-1:2:3", "transaction": "tx1"}),
        encode_frame("COMMIT", {"transaction": "tx1", "receipt": "r1"}),
    ]

    def parsed(data: bytes) -> tuple[str, dict[str, str], bytes]:
        frame = parse_frame(data[:-1])  # without the NUL, as the transport hands frames over
        return frame.cmd, dict(frame.headers), frame.body

    assert [parsed(f) for f in ours] == [parsed(f) for f in sent]
    assert ours[1].endswith(body + b"\x00")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"transaction": "tx1", "destination": BASE + "main", "statusq-enqueued-at": "1764770000.123456"},
        {"statusq-error": "ValueError: a:b\nc\\d\r", "x-app": "1"},  # every escape, in one value
        {"x-app": "plain", "x-odd": "a:b"},  # one value to escape among plain ones
        {"x-n": 7, "x-app": "1"},  # type: ignore[dict-item] # not a str: str() of it, as stomp.py does
    ],
)
def test_a_frame_is_encoded_as_stomp_py_encodes_it_escaped_or_not(headers: dict[str, str]) -> None:
    # The fast path (no value to escape, all str) and the slow one give stomp.py's frame
    from stomp.utils import parse_frame

    for body in (b"", b'{"n": 1}'):
        capture = Capture()
        Protocol12(capture, auto_content_length=True).send(BASE + "main", body, headers={**headers})
        ours = encode_frame("SEND", {**headers, "destination": BASE + "main"}, body)
        frame, theirs = parse_frame(ours[:-1]), parse_frame(capture.sent[0][:-1])
        assert (frame.cmd, dict(frame.headers), frame.body) == (theirs.cmd, dict(theirs.headers), theirs.body)
        assert ours.endswith(body + b"\x00")


def test_a_batch_of_ids_are_random_version_4_uuids_as_uuid4_makes_them() -> None:
    ids = wire.new_ids(1000)
    assert len(set(ids)) == 1000
    for item_id in ids:
        parsed = uuid.UUID(hex=item_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (item_id, 4, uuid.RFC_4122)


def test_the_backlog_is_unknown_on_stomp_and_asks_no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a STOMP backend where opening any connection would fail the test
    def no_connection(*_args: object) -> None:
        raise AssertionError("backlog() opened a connection (it used to drain the dead-letter queue)")

    monkeypatch.setattr("statusq.queues.stomp.admin.StompLink", no_connection)
    monkeypatch.setattr("statusq.queues.stomp.manager.StompLink", no_connection)
    config = Config.model_validate({"queue": {"subsystem": "stomp", "stomp": {"servers": ["127.0.0.1:1"]}}})

    # When its backlog is asked for, Then it is unknown, said at once without a connection
    with StompQueueManager(config) as qm:
        assert qm.backlog() is None
        assert not qm.admin.can(Capability.BACKLOG)
        # And what it can do is declared: the dead letters are an operator's explicit action
        assert qm.admin.capabilities == {
            Capability.DEAD_LETTERS,
            Capability.REQUEUE,
            Capability.PURGE,
            Capability.CONTROL,
        }
        assert qm.release_claims("gone", "died") == 0  # the broker redelivers by itself


def test_a_producer_only_manager_can_do_nothing_as_admin() -> None:
    admin = Admin()
    assert admin.capabilities == frozenset() and admin.backlog() is None
    with pytest.raises(Unsupported, match="cannot list dead letters"):
        admin.dead_letters()
    with pytest.raises(Unsupported, match="cannot send control commands"):
        admin.send_control("reload")


def test_rabbitmq_work_queues_alone_are_declared_with_x_max_priority() -> None:
    def args(destination: str, headers: dict[str, str] | None = None, flavor: str = "rabbitmq", mp: int = 9) -> dict:
        return queue_declare_args(
            flavor, destination, headers or {}, basename="/queue/sq/", dead_letter="/queue/sq/dlq", max_priority=mp
        )

    assert args("/queue/sq/main") == {"x-max-priority": "9"}
    assert args("/queue/sq/main/push/example.org") == {"x-max-priority": "9"}  # a breakout
    assert args("/queue/sq/dlq") == {}  # browsed by operators' tools
    assert args("/queue/sq/main.delay.1000", {"x-message-ttl": "1000"}) == {}  # a holding queue
    assert args("/queue/elsewhere") == {} and args("/topic/sq.control") == {}
    assert args("/queue/sq/main", flavor="activemq") == {}
    assert args("/queue/sq/main", mp=0) == {}  # max_priority = 0: declared as before


def test_quorum_declares_every_queue_of_ours_with_x_queue_type_and_none_with_a_priority() -> None:
    def args(destination: str, headers: dict[str, str] | None = None, flavor: str = "rabbitmq", **kw: str) -> dict:
        where = {"basename": "/queue/sq/", "dead_letter": "/queue/dead", "control": "/queue/ctl", **kw}
        return queue_declare_args(flavor, destination, headers or {}, max_priority=9, queue_type="quorum", **where)

    quorum = {"x-queue-type": "quorum"}
    assert args("/queue/sq/main") == quorum  # a group's queue: no x-max-priority (refused)
    assert args("/queue/sq/main/shard-3") == quorum
    assert args("/queue/sq/main/push/example.org") == quorum  # a breakout
    assert args("/queue/dead") == quorum  # the dead-letter queue, even outside basename
    assert args("/queue/sq/main.delay.1000", {"x-message-ttl": "1000"}) == quorum  # a holding queue
    assert args("/queue/ctl") == quorum  # a control channel that is a queue
    assert args("/topic/sq.control") == {} and args("/queue/ctl", control=None) == {}
    assert args("/queue/elsewhere") == {}  # not ours: declared by whoever owns it
    assert args("/queue/sq/main", flavor="activemq") == {}  # never on ActiveMQ


def test_classic_queues_are_declared_without_x_queue_type_as_before() -> None:
    def args(destination: str) -> dict:
        return queue_declare_args(
            "rabbitmq",
            destination,
            {},
            basename="/queue/sq/",
            dead_letter="/queue/sq/dlq",
            control="/queue/ctl",
            max_priority=9,
            queue_type="classic",
        )

    assert args("/queue/sq/main") == {"x-max-priority": "9"}
    assert args("/queue/sq/dlq") == {} and args("/queue/ctl") == {}


def test_a_refused_redeclaration_names_the_queue_its_type_and_the_fix() -> None:
    def said(arg: str, queue: str, sides: str, queue_type: str) -> str:
        body = f"PRECONDITION_FAILED - inequivalent arg '{arg}' for queue '{queue}' in vhost '/': {sides}"
        return declare_refusal("precondition_failed", body.encode(), 9, queue_type) or ""

    # A classic queue without arguments, asked to be quorum
    got = said("x-queue-type", "sq.main", "received the value 'quorum' of type 'longstr' but current is none", "quorum")
    assert "queue 'sq.main' exists as a classic queue, not the quorum one" in got
    # A classic queue with priorities, asked to be quorum (RabbitMQ names the priority first)
    sides = "received none but current is the value '9' of type 'long'"
    got = said("x-max-priority", "sq.main.shard-1", sides, "quorum")
    assert "queue 'sq.main.shard-1' exists as a classic queue (x-max-priority 9), not the quorum one" in got
    assert "cannot change a queue's type" in got
    # A quorum queue, asked to be classic (without x-queue-type, or with it)
    got = said("x-queue-type", "q", "received none but current is the value 'quorum' of type 'longstr'", "classic")
    assert "queue 'q' exists as a quorum queue, not the classic one" in got
    got = said("x-queue-type", "q", "received 'classic' but current is 'quorum'", "classic")
    assert "queue 'q' exists as a quorum queue, not the classic one" in got
    # Classic on both sides, other priorities: as before
    got = said("x-max-priority", "q", "received the value '9' of type 'long' but current is none", "classic")
    assert "exists with other x-max-priority arguments (none) than [queue.stomp] max_priority = 9" in got
    assert declare_refusal("not_found", b"NOT_FOUND - no queue 'q'", 9, "classic") is None


def test_a_resent_item_keeps_its_priority_and_it_is_no_user_header() -> None:
    frame = {"destination": "/queue/sq/main", "priority": "9", "statusq-transport": "t", "statusq-site": "s"}
    delivery = wire.to_delivery(frame, b"{}", Destinations("/queue/sq/", []), "default", 1)
    assert delivery.priority == 9 and "priority" not in delivery.headers
    assert wire.copy_headers(delivery, delivery.token)["priority"] == "9"
