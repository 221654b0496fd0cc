"""What a broker's ERROR frame means for the caller: a fault, or a broker that is full.

A full broker is not broken: the producer should wait or shed load, not page anyone, so an
enqueue it refused raises :class:`~statusq.errors.BrokerFull`, not a plain QueueError.
"""

from __future__ import annotations

#: Marks a failed receipt whose ERROR said the broker is full (see :func:`is_full`).
FULL = "full: "
#: What brokers say when a limit refuses a SEND: ActiveMQ's producer flow control with
#: ``sendFailIfNoSpace(AfterTimeout)`` ("Usage Manager Memory Limit reached", "Persistent store
#: is Full", both a ResourceAllocationException); RabbitMQ blocks publishers instead of
#: refusing them, so its alarms show as a missing receipt.
_FULL_SIGNS = ("ResourceAllocationException", "Usage Manager", "store is Full", "Limit reached")


def is_full(message: str, detail: bytes) -> bool:
    """Whether an ERROR frame says the broker refused for lack of room, not for a fault."""
    text = message + detail.decode("utf-8", "replace")
    return any(sign in text for sign in _FULL_SIGNS)
