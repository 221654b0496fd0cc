"""A transaction a full ActiveMQ refused frees what it took only with its connection (issue 18).

ActiveMQ refuses a SEND of a transaction once its store is full, marks the transaction
rollback-only and refuses its COMMIT, and keeps the connection.  What the transaction's earlier
SENDs took stays held (their messages in memory, their journal files in the store) until that
connection closes: an ABORT of it is refused ("Invalid transaction id"), and a later transaction
on the connection does not free it (bench/failed_transaction.py measured both).  So statusq
closes such a connection: the producer's after a refused batch, the settlement writer's side
link before its next commit.  Here on the test's own broker, a 3 MB store that one transaction
of 18 items of 200 KB overflows (15 fit), with memory above the store so the store refuses first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import statusq
from statusq import BrokerFull, Item
from statusq.config.queue import StompConfig
from statusq.queues.stomp.settlements import Resend
from statusq.queues.stomp.sidelink import ResendLink
from tests.activemq_stats import broker_usage
from tests.conftest import wait_for
from tests.stomp import SMALL_ACTIVEMQ, PrivateActiveMQ, make_broker, private_activemq, stomp_toml

pytestmark = pytest.mark.e2e

BIG = 200_000
LIMITS = {**SMALL_ACTIVEMQ, "ACTIVEMQ_MEMORY_LIMIT": "16 mb"}  # memory above the store: the store refuses first


@pytest.fixture
def small_broker(tmp_path: Path) -> Iterator[PrivateActiveMQ]:
    for broker in private_activemq("failedtx", 61695, 61696, tmp_path / "store", LIMITS):
        broker.start()
        yield broker


def _freed(port: int) -> bool:
    """Nothing held in memory, and the store below its limit (the refused transaction's journal
    files freed: the broker holds no message)."""
    usage = broker_usage(port)
    return int(str(usage["memoryPercentUsage"])) == 0 and int(str(usage["storePercentUsage"])) < 100


def test_a_batch_a_full_activemq_refused_frees_what_it_took(
    small_broker: PrivateActiveMQ, write_config: Callable[..., Path]
) -> None:
    # Given a producer of a broker whose store holds 15 items of 200 KB (a refused SEND costs
    # the connection a second of store wait: receipt_timeout well above the 3 it takes here)
    broker = make_broker("activemq")
    toml = stomp_toml(broker, servers=[f"127.0.0.1:{small_broker.stomp_port}"], receipt_timeout="30s")
    config = write_config("sqlite:///unused.sqlite", toml, queue={"subsystem": "stomp"})
    with statusq.connect(config) as qm:
        # When it enqueues 18 in one batch: the broker takes 15 in the transaction, refuses the
        # rest, then the COMMIT ("Transaction marked rollback only")
        with pytest.raises(BrokerFull, match="Persistent store is Full"):
            qm.enqueue_many([Item({"n": n, "pad": "x" * BIG}, "count") for n in range(18)])
        # Then, the producer still open, what the transaction took is freed
        wait_for(lambda: _freed(small_broker.stomp_port), timeout=30, what="the refused batch's memory and store")
        # And the producer connects again and is served
        qm.enqueue({"n": -1}, "count")


def test_the_side_link_frees_a_refused_commit_before_its_next(small_broker: PrivateActiveMQ) -> None:
    # Given the settlement writer's side link to a broker whose store holds 15 items of 200 KB
    config = StompConfig(
        servers=[f"127.0.0.1:{small_broker.stomp_port}"], username="guest", password="guest", receipt_timeout=30.0
    )
    side = ResendLink(config, lambda: None)
    destination = make_broker("activemq").group_queue("default")
    assert side.ready()
    try:
        # When it commits 18 re-sends and the broker refuses the commit as full
        resends = [Resend(f"ack-{n}", destination, b"x" * BIG, {"persistent": "true"}) for n in range(18)]
        receipt = side.commit_sends(resends)
        assert receipt is not None
        answers: list[tuple[bool, bool]] = []

        def answered() -> bool:
            state = side.confirmed(receipt)
            if state is not None:
                answers.append((state, side.refused_as_full(receipt)))
            return state is not None

        wait_for(answered, timeout=60, what="the commit's answer")
        assert answers == [(False, True)]
        # Then the next time the writer asks to commit, the link is dialled again, and the
        # broker frees what the refused transaction took
        generation = side.link.generation
        assert side.ready()
        wait_for(lambda: _freed(small_broker.stomp_port), timeout=30, what="the refused commit's memory and store")
        assert side.link.generation == generation + 1, "the side link was not dialled again"
        # And a commit on the new connection is taken
        again = side.commit_sends([Resend("ack-small", destination, b"small", {"persistent": "true"})])
        assert again is not None
        states: list[bool | None] = []
        wait_for(lambda: states.append(side.confirmed(again)) or states[-1] is not None, timeout=30, what="a commit")
        assert states[-1] is True
    finally:
        side.close()
