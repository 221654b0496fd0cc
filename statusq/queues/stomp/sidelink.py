"""The consumer's second connection, for re-sends only (why: :mod:`statusq.queues.stomp.settler`).

Opened on the first retry or dead letter, not before: a worker whose items all succeed holds one
connection.  Its redials follow the consumer's rule (:class:`Redial`), asked from the writer's
thread; while it is down, re-sends go the old way, with their ACKs on the consuming connection.
After a commit a full ActiveMQ refused, it is closed and dialled again before the next commit:
the broker keeps a refused transaction, and what of it it took, until its connection closes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from statusq.config import StompConfig
from statusq.queues.stomp.link import StompLink
from statusq.queues.stomp.redial import Redial
from statusq.queues.stomp.settler import Resend


class ResendLink:
    def __init__(self, config: StompConfig, on_receipt: Callable[[], None]) -> None:
        self.link = StompLink(config, "consumer re-sends")
        self.link.receipt_hook = on_receipt
        self._redial = Redial(self.link, config, "consumer re-sends")

    def ready(self) -> bool:
        # A commit the full broker refused holds what it took until the connection closes:
        # closed here (once no other commit awaits its receipt), and dialled again.
        self.link.release_refused_transaction()
        return self.link.connected or self._redial.connect()

    def commit_sends(self, resends: Sequence[Resend]) -> str | None:
        return self.link.commit_resends(self.link.generation, resends, ack_originals=False)

    def confirmed(self, receipt: str) -> bool | None:
        return self.link.confirmed(receipt)

    def refused_as_full(self, receipt: str) -> bool:
        return self.link.refused_as_full(receipt)

    def abandon(self, why: str) -> None:
        self.link.abandon(why)

    def close(self) -> None:
        self.link.close()
