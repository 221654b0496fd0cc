"""What the settlement writer (:mod:`statusq.queues.stomp.settler`) needs of its connections.

Apart from the writer so that its unit tests' fakes and the real links
(:class:`~statusq.queues.stomp.link.StompLink`, :class:`~statusq.queues.stomp.sidelink.ResendLink`)
meet one written contract, and the writer stays within a reader's reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from statusq.queues.stomp.settlements import Resend


class SettleLink(Protocol):
    """What the writer needs of a connection (:class:`~statusq.queues.stomp.link.StompLink`)."""

    def write_acks(self, generation: int, ack_ids: Sequence[str]) -> bool:
        """ACK frames in one socket send; False when ``generation`` is no longer connected."""

    def commit_resends(self, generation: int, resends: Sequence[Resend], *, ack_originals: bool = True) -> str | None:
        """BEGIN, SENDs, ACKs of their originals (unless not ``ack_originals``), COMMIT asking for
        a receipt; return the receipt id without waiting for it, or None when ``generation`` is
        no longer connected."""

    def confirmed(self, receipt: str) -> bool | None:
        """True once the broker confirmed, False if it cannot any more, None while waiting."""

    def refused_as_full(self, receipt: str) -> bool:
        """Whether a receipt :meth:`confirmed` just called False failed because the broker is
        full (and the connection lives on); asked once, after that False."""


class SideLink(Protocol):
    """A connection of its own for re-sends (:mod:`statusq.queues.stomp.sidelink`)."""

    def ready(self) -> bool:
        """Connected, or connected now if an attempt is due; False: use the consuming link."""

    def commit_sends(self, resends: Sequence[Resend]) -> str | None:
        """BEGIN, SENDs, COMMIT asking for a receipt, not waited for; None if not connected."""

    def confirmed(self, receipt: str) -> bool | None:
        """As :meth:`SettleLink.confirmed`."""

    def refused_as_full(self, receipt: str) -> bool:
        """As :meth:`SettleLink.refused_as_full`."""

    def abandon(self, why: str) -> None:
        """Close the connection: every commit on it unanswered counts as lost."""
