"""What an ERROR frame fails on a StompLink: the one frame it answers when a full broker keeps
the connection (ActiveMQ), every waiter otherwise.  No broker: frames handed in directly."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from statusq.config import StompConfig
from statusq.queues.stomp.link import StompLink

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
