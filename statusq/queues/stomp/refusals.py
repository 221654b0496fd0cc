"""What a broker's ERROR frame means for the caller: a fault, or a broker that is full.

A full broker is not broken: the producer should wait or shed load, not page anyone, so an
enqueue it refused raises :class:`~statusq.errors.BrokerFull`, not a plain QueueError.
"""

from __future__ import annotations

import re

#: Marks a failed receipt whose ERROR said the broker is full (see :func:`is_full`).
FULL = "full: "
#: What brokers say when a limit refuses a SEND: ActiveMQ's producer flow control with
#: ``sendFailIfNoSpace(AfterTimeout)`` ("Usage Manager Memory Limit reached", "Persistent store
#: is Full", both a ResourceAllocationException); RabbitMQ blocks publishers instead of
#: refusing them, so its alarms show as a missing receipt.
_FULL_SIGNS = ("ResourceAllocationException", "Usage Manager", "store is Full", "Limit reached")
#: ActiveMQ's answer to the COMMIT of a transaction one of whose SENDs it refused ("COMMIT FAILED:
#: Transaction marked rollback only").  It keeps that transaction, and what of it it took (the
#: messages in memory, the store's journal files they are in), until the connection closes; an
#: ABORT of it is refused ("Invalid transaction id": its STOMP name was dropped at the COMMIT).
#: Measured: bench/failed_transaction.py, docs/brokers/activemq.md.
ROLLBACK_ONLY = "marked rollback only"


def is_full(message: str, detail: bytes) -> bool:
    """Whether an ERROR frame says the broker refused for lack of room, not for a fault."""
    text = message + detail.decode("utf-8", "replace")
    return any(sign in text for sign in _FULL_SIGNS)


_QUEUE = re.compile(r"for queue '([^']*)'")
#: RabbitMQ's "received the value 'quorum' of type 'longstr' but current is none", or "received
#: 'classic' but current is 'quorum'" (either side may be none).
_SIDES = re.compile(r"received (?:(?:the value )?'([^']*)'|none)[^:]*?but current is (?:(?:the value )?'([^']*)'|none)")
_CHANGE = (
    "RabbitMQ cannot change a queue's type: drain and delete the queue (see the RabbitMQ docs page, "
    "quorum queues), use a new basename, or set queue_type back"
)


def declare_refusal(message: str, detail: bytes, max_priority: int, queue_type: str) -> str | None:
    """What to tell an operator when RabbitMQ refused to (re)declare a queue of ours with the
    arguments this config asks for (PRECONDITION_FAILED: a queue keeps its arguments for life);
    None if the ERROR is about something else.  Names the queue, the two sides and the fix."""
    text = message + " " + detail.decode("utf-8", "replace")
    found = _QUEUE.search(text)
    queue = repr(found.group(1)) if found else "a queue of ours"
    sides = _SIDES.search(text)
    current = sides.group(2) if sides else None
    if "x-queue-type" in text:
        kind = current or "classic"
        wanted = f"not the {queue_type} one [queue.stomp] queue_type asks for"
        return f"queue {queue} exists as a {kind} queue, {wanted}; {_CHANGE}"
    if "x-max-priority" not in text:
        return None
    if queue_type == "quorum":  # a quorum queue has no x-max-priority: this one is classic
        return (
            f"queue {queue} exists as a classic queue (x-max-priority {current or 'none'}), not the quorum "
            f"one [queue.stomp] queue_type = 'quorum' asks for; {_CHANGE}"
        )
    return (
        f"queue {queue} exists with other x-max-priority arguments ({current or 'none'}) than [queue.stomp] "
        f"max_priority = {max_priority} asks for; RabbitMQ keeps a queue's arguments for life: drain and "
        "delete the old queue, or set max_priority to what it was declared with (0: none; a quorum queue "
        "has none: then queue_type = 'quorum')"
    )
