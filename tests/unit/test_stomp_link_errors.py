"""What an ERROR frame fails on a StompLink: the one frame it answers when a full broker keeps
the connection (ActiveMQ), every waiter otherwise.  No broker: frames handed in directly."""

from __future__ import annotations

import re
import threading
import time
from types import SimpleNamespace

import pytest

from statusq.config import StompConfig
from statusq.errors import BrokerFull, QueueError
from statusq.queues.stomp.link import StompLink
from statusq.queues.stomp.sidelink import ResendLink

STORE_FULL = "Persistent store is Full, 100% of 25165824. Stopping producer (ID:x) to prevent flooding queue://q."


def live_link(*receipts: str) -> StompLink:
    link = StompLink(StompConfig(), "test")
    link._conn = object()  # connected, as far as the link's bookkeeping goes
    link._connected.set()
    for receipt in receipts:
        link._receipts[receipt] = threading.Event()
    return link


def error(message: str, receipt: str | None = None) -> SimpleNamespace:
    headers = {"message": message, **({"receipt-id": receipt} if receipt else {})}
    return SimpleNamespace(headers=headers, body=b"")


def test_a_refused_send_fails_only_its_transaction_s_commit_as_full() -> None:
    # Given two commits in flight on a connection of a full ActiveMQ
    link = live_link("commit-a", "commit-b")
    # When it refuses a SEND of the first (no receipt), then that transaction's COMMIT
    link.on_error(error(STORE_FULL))
    assert link.confirmed("commit-a") is None, "a refused SEND alone fails no receipt"
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit-a"))
    # Then that commit failed because the broker is full, and the other still waits
    assert link.confirmed("commit-a") is False and link.refused_as_full("commit-a")
    assert link.confirmed("commit-b") is None


def test_a_commit_refused_before_any_full_error_fails_alone() -> None:
    # Given two commits in flight on a connection of ActiveMQ, which has refused nothing yet
    link = live_link("commit-a", "commit-b")
    # When the first's COMMIT is refused as rollback-only before its SEND's ERROR came (ActiveMQ
    # keeps the connection after both)
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit-a"))
    # Then that commit failed (decided once its cause had a moment to come), and the other still
    # waits for its receipt: failed with it, it was parked though the broker took it (a run had
    # 19 dead letters sent twice)
    assert link._receipts["commit-a"].is_set() and "commit-a" in link._failed_receipts
    assert not link._receipts["commit-b"].is_set() and link.confirmed("commit-b") is None


def test_a_send_with_a_receipt_refused_as_full_fails_alone() -> None:
    link = live_link("send", "other")
    link.on_error(error(STORE_FULL, "send"))
    assert link.confirmed("send") is False and link.refused_as_full("send")
    assert link.confirmed("other") is None


def test_any_other_error_fails_every_waiter_not_as_full() -> None:
    # (the broker closes the connection after it)
    link = live_link("a", "b")
    link.on_error(error("Unexpected ACK received for message-id [null]", "a"))
    for receipt in ("a", "b"):
        assert link.confirmed(receipt) is False and not link.refused_as_full(receipt)


ROLLBACK_ONLY = "COMMIT FAILED: Transaction marked rollback only xaErrorCode:100"


class FakeConn:
    """What a link closes: counts DISCONNECTs; the COMMIT of a batch answered as a full ActiveMQ
    answers it (a SEND of it refused, then the COMMIT)."""

    def __init__(self, link: StompLink | None = None) -> None:
        self.link = link
        self.disconnects = 0
        self.transport = self

    def disconnect(self) -> None:
        self.disconnects += 1

    def send(self, data: bytes) -> None:
        found = re.search(rb"COMMIT\n(?:[^\n]*\n)*?receipt:([0-9a-f]+)\n", data)
        if found and self.link is not None:
            self.link.on_error(error(STORE_FULL))
            self.link.on_error(error(ROLLBACK_ONLY, found.group(1).decode()))


def test_a_refused_commit_s_connection_is_closed_once_no_other_answer_is_awaited() -> None:
    # Given a full ActiveMQ that refused a SEND of one transaction, then its COMMIT, while the
    # COMMIT of another transaction was in flight on the same connection
    link = live_link("commit-a", "commit-b")
    conn = link._conn = FakeConn()
    link.on_error(error(STORE_FULL))
    link.on_error(error(ROLLBACK_ONLY, "commit-a"))
    assert link.confirmed("commit-a") is False and link.refused_as_full("commit-a")
    # When the owner asks to release the refused transaction, the other commit still awaited
    # Then the connection is kept: closing it would lose that commit's receipt
    assert not link.release_refused_transaction()
    assert link.connected and conn.disconnects == 0
    # And once that commit is answered, the connection is closed (the broker keeps what the
    # refused transaction took until then; an ABORT of it is refused)
    link.on_receipt(SimpleNamespace(headers={"receipt-id": "commit-b"}))
    assert link.confirmed("commit-b") is True
    assert link.release_refused_transaction()
    assert not link.connected and conn.disconnects == 1


def test_a_new_connection_holds_no_refused_transaction() -> None:
    link = live_link("commit-a")
    link.on_error(error(ROLLBACK_ONLY, "commit-a"))
    link.confirmed("commit-a")
    link._forget_refusals()  # what a connect does
    assert not link.release_refused_transaction() and link.connected


def test_a_send_refused_with_its_own_receipt_keeps_the_connection() -> None:
    # ActiveMQ answers a SEND that asked for a receipt alone, and marks no transaction
    link = live_link("send")
    link.on_error(error(STORE_FULL, "send"))
    assert link.confirmed("send") is False
    assert not link.release_refused_transaction() and link.connected


def test_a_batch_a_full_activemq_refused_closes_the_producer_s_connection() -> None:
    # Given a producer's link to a full ActiveMQ
    link = live_link()
    conn = link._conn = FakeConn(link)
    # When it refuses a batch (a SEND of it, then its COMMIT)
    with pytest.raises(BrokerFull):
        link.send_batch([("/queue/q", b"x", {}), ("/queue/q", b"y", {})], confirm_each=False)
    # Then the connection is closed, so the broker drops that transaction; the producer's next
    # call connects again
    assert not link.connected and conn.disconnects == 1


def test_the_side_link_dials_again_after_a_refused_commit() -> None:
    # Given the settlement writer's side link, whose last commit a full ActiveMQ refused
    side = ResendLink(StompConfig(), lambda: None)
    old = side.link._conn = FakeConn()
    side.link._connected.set()
    side.link.on_error(error(ROLLBACK_ONLY, "commit"))
    dialled: list[int] = []

    def connect() -> None:  # as StompLink.connect: a fresh connection
        dialled.append(1)
        side.link._forget_refusals()
        side.link._conn = FakeConn()
        side.link._connected.set()

    side.link.connect = connect  # type: ignore[method-assign]
    # When the writer asks whether it may commit again
    assert side.ready()
    # Then it does so on a new connection, the refused one closed
    assert old.disconnects == 1 and dialled == [1]
    # And the next ask keeps the new connection
    assert side.ready() and dialled == [1]


def test_a_commit_refused_before_its_full_send_s_error_still_raises_broker_full() -> None:
    # Given a COMMIT's ERROR ("marked rollback only") that came before the ERROR of the SEND that
    # made it fail (ActiveMQ sent them in that order once, under load)
    link = live_link("commit")
    event = link._receipts["commit"]
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit"))
    later = threading.Timer(0.1, lambda: link.on_error(error(STORE_FULL)))
    later.start()
    # When its caller looks at the answer, then it is told the broker is full, not of a fault
    with pytest.raises(BrokerFull, match="Persistent store is Full"):
        link._await("commit", event, time.monotonic() + 5)
    later.join()


def test_a_commit_refused_for_no_full_send_is_a_plain_refusal() -> None:
    link = live_link("commit")
    event = link._receipts["commit"]
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit"))
    with pytest.raises(QueueError, match="broker refused") as raised:
        link._await("commit", event, time.monotonic() + 5)
    assert not isinstance(raised.value, BrokerFull)


def test_a_pipelined_commit_refused_before_its_full_send_s_error_is_refused_as_full() -> None:
    # Given a pipelined commit (the settlement writer's) refused as rollback-only before the
    # ERROR of its SEND came
    link = live_link("commit")
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit"))
    # Then it is not decided yet: that ERROR may come second
    assert link.confirmed("commit") is None
    # When it comes, the commit was refused because the broker is full (its re-sends parked or
    # held, not taken for a fault)
    link.on_error(error(STORE_FULL))
    assert link.confirmed("commit") is False and link.refused_as_full("commit")


def test_a_pipelined_commit_refused_for_no_full_send_is_decided_after_a_moment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = live_link("commit")
    link.on_error(error("COMMIT FAILED: Transaction marked rollback only", "commit"))
    assert link.confirmed("commit") is None
    later = time.monotonic() + 3
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert link.confirmed("commit") is False and not link.refused_as_full("commit")
