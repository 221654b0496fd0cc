"""Re-sends a full broker refused, parked in the shared store instead of held unacked.

Why: held (:mod:`statusq.queues.stomp.holds`), a refused re-send keeps its original unacked in
the consumer's prefetch window until the broker takes it.  Under a long full spell the windows
filled with such originals (the dead letters of failing items, small and many): the worker had
nothing left to run while the shards held hundreds of ready items, and no ACK of its freed the
broker's room, so the drain stalled until its connection closed (issue 18).  Parked, a re-send is
a row of the shared store due at once, committed before its original is ACKed; the relay
(:mod:`statusq.io.delays`) sends it when the broker takes SENDs again, as it does delayed items.

A commit of re-sends the broker holds unanswered past ``receipt_timeout`` (ActiveMQ's store wait,
on a live connection) is parked too: the side connection it went on is closed, which rolls back
what the broker had not committed, and the commit counts as lost.  Held instead, 32 moved items'
originals filled a worker's windows for 80 s with the store at 100% and nothing draining it.

Where there is a shared store for delays (``[queue.stomp] delays``: ActiveMQ by default).  Without
one (RabbitMQ, ``delays = "broker"``), or if the store cannot be written, re-sends are held as
before.  A crash between the row's commit and the original's ACK runs the item's copy and the
redelivered original: a duplicate, never a loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from statusq.errors import StatusqError

if TYPE_CHECKING:
    from statusq.queues.stomp.settlements import Resend
    from statusq.queues.stomp.storedelays import StoreDelays

log = logging.getLogger(__name__)

#: After a refusal, re-sends are parked at once for this long rather than each refused in turn
#: (every refusal is a commit the broker answers only after its own store wait), and hot sites'
#: moves wait (:mod:`statusq.queues.stomp.hotmoves`): a broker's full spell lasts seconds to
#: minutes, and a move of a 20 KB item needs the room it lacks.
PARK_FOR = 10.0


class Parking:
    """One consumer's parked re-sends: the store's writes, and one log line at each end of a spell."""

    def __init__(
        self,
        delays: StoreDelays,
        name: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.delays = delays
        self.name = name
        self.clock = clock
        self.wall = wall
        self.since: float | None = None  # when this spell began; None: none
        self.parked = 0  # in this spell
        self._until = 0.0

    def direct(self) -> bool:
        """Whether re-sends go straight to the store now (a refusal was just seen)."""
        return self.clock() < self._until

    def park(self, resends: Sequence[Resend]) -> bool:
        """Write ``resends`` as rows due now, committed on True; False: the store cannot take them."""
        from statusq.queues.db.delays import Delayed  # noqa: PLC0415 - SQLAlchemy, only when used

        due = self.wall()
        try:
            self.delays.hold([Delayed(r.destination, r.body, dict(r.headers), due) for r in resends])
        except (StatusqError, OSError) as exc:  # a database error, or its file that cannot be made
            log.warning("%s: %d re-send(s) not parked in the shared store, held: %s", self.name, len(resends), exc)
            return False
        now = self.clock()
        if self.since is None:
            self.since, self.parked = now, 0
            log.warning(
                "%s: the broker refuses re-sends as full: parked in the shared store (their originals "
                "acked), relayed when it takes them",
                self.name,
            )
        self.parked += len(resends)
        self._until = now + PARK_FOR
        return True

    def taken(self) -> None:
        """The broker confirmed a commit of re-sends: a spell of parking, if any, is over."""
        if self.since is not None and not self.direct():
            log.warning(
                "%s: the broker takes re-sends again: %d parked over %.1f s, relayed from the shared store",
                self.name,
                self.parked,
                self.clock() - self.since,
            )
            self.since = None
