"""statusq.metrics.activemq without a broker: the plugin's replies → the backlog series.

The reply bodies are what ActiveMQ 5.17 sent (``transformation: jms-map-json``) for a queue of 5
messages, 3 of them prefetched and unacked by a consumer; the e2e test asks a real broker.
"""

from __future__ import annotations

import json

import pytest

from statusq.config import Config, StompConfig
from statusq.metrics.activemq import UNKNOWN, ActiveMQBacklog, QueueStats, backlog_of, parse_reply, plan

REPLY = (
    b'{"map":{"entry":[{"string":"dequeueCount","long":0},{"string":"averageMessageSize","long":1026},'
    b'{"string":["brokerId","ID:vm-43225-1795529687715-0:1"]},{"string":"consumerCount","long":1},'
    b'{"string":"minEnqueueTime","double":14},{"string":"memoryPercentUsage","int":0},'
    b'{"string":"inflightCount","long":3},{"string":"dispatchCount","long":3},{"string":"size","long":5},'
    b'{"string":["destinationName","queue:\\/\\/statusq\\/main"]},{"string":"producerCount","long":0},'
    b'{"string":["brokerName","mstats"]},{"string":"enqueueCount","long":5}]}}'
)
END = b'{"map":""}'


def stomp(**fields: object) -> StompConfig:
    return StompConfig.model_validate({"basename": "/queue/statusq/", **fields})


def test_a_reply_gives_the_queue_its_size_and_in_flight_count() -> None:
    assert parse_reply(REPLY) == QueueStats("/queue/statusq/main", size=5, in_flight=3)


def test_the_end_of_list_marker_is_none() -> None:
    assert parse_reply(END) is None


def test_a_map_of_one_entry_is_an_object_and_still_read() -> None:
    # Jettison writes a one-element list as the element itself: its key is read (and without
    # the counts the answer is refused, naming what it had)
    body = json.dumps({"map": {"entry": {"string": ["destinationName", "queue://x"]}}}).encode()
    with pytest.raises(ValueError, match=r"have: \['destinationName'\]"):
        parse_reply(body)


@pytest.mark.parametrize("body", [b"", b"not json", b'{"other": 1}', b'{"map": 5}', b"[]"])
def test_anything_else_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_reply(body)


def test_with_groups_exactly_the_subscribed_destinations_are_asked_for() -> None:
    config = stomp(breakout=["main/distrib", "main/distrib/big.example.org", "other/feed"])
    wanted = plan(config, ["main"])
    assert wanted.queries == [
        "statusq/main",
        *[f"statusq/main/shard-{n}" for n in range(4)],  # [queue.stomp] shards, by default 4
        "statusq/main/distrib",
        "statusq/main/distrib/big.example.org",
        "statusq/dlq",
    ]
    assert wanted.serves("/queue/statusq/main/distrib/big.example.org")
    assert not wanted.serves("/queue/statusq/other/feed")  # another daemon's group
    assert not wanted.serves("/queue/statusq/dlq")


def test_serving_every_group_asks_by_wildcard_and_keeps_what_is_under_basename() -> None:
    wanted = plan(stomp(dead_letter="/queue/elsewhere.dlq"), None)
    assert wanted.queries == [">", "elsewhere.dlq"]
    assert wanted.serves("/queue/statusq/anygroup")
    assert not wanted.serves("/queue/ActiveMQ.DLQ")
    assert not wanted.serves("/queue/statusqueue")  # a prefix of the name, not of the path
    assert not wanted.serves("/queue/elsewhere.dlq")


def test_ready_is_size_less_in_flight_summed_over_our_queues_and_dead_is_the_dlq_size() -> None:
    answers = [
        QueueStats("/queue/statusq/main", size=5, in_flight=3),
        QueueStats("/queue/statusq/main/distrib", size=7, in_flight=0),
        QueueStats("/queue/statusq/dlq", size=2, in_flight=0),
        QueueStats("/queue/someone.else", size=100, in_flight=10),
        QueueStats("/queue/statusq/dlq", size=2, in_flight=0),  # wildcard and name both answered
    ]
    backlog = backlog_of(answers, plan(stomp(), None))
    assert (backlog.ready, backlog.in_flight, backlog.dead, backlog.delayed) == (9, 3, 2, None)


def test_queues_the_broker_has_not_made_yet_count_zero() -> None:
    backlog = backlog_of([], plan(stomp(), ["main"]))
    assert (backlog.ready, backlog.in_flight, backlog.dead) == (0, 0, 0)


def test_a_count_taken_between_two_updates_never_goes_below_zero() -> None:
    backlog = backlog_of([QueueStats("/queue/statusq/main", size=2, in_flight=3)], plan(stomp(), None))
    assert (backlog.ready, backlog.in_flight) == (0, 3)


def no_broker(**stomp_fields: object) -> Config:
    # Port 9 (discard) on loopback: nothing listens, so an attempt to connect would raise
    servers = ["127.0.0.1:9"]
    return Config.model_validate({"queue": {"subsystem": "stomp", "stomp": {"servers": servers, **stomp_fields}}})


def test_rabbitmq_is_never_asked() -> None:
    config = no_broker(flavor="rabbitmq")
    assert ActiveMQBacklog(lambda: config, lambda: None)() == UNKNOWN


def test_before_the_supervisor_wrote_its_groups_nothing_is_asked() -> None:
    def not_yet() -> list[str]:
        raise LookupError("not written yet")

    config = no_broker()
    assert ActiveMQBacklog(lambda: config, not_yet)() == UNKNOWN


def test_a_broker_that_does_not_answer_raises_for_the_cache_to_log() -> None:
    from statusq.errors import ConnectionClosed

    config = no_broker(receipt_timeout="1s", reconnect_delay="10ms")
    with pytest.raises(ConnectionClosed):
        ActiveMQBacklog(lambda: config, lambda: None)()
