"""Re-sends a full broker refused, held with their originals unacked until it takes them.

Why hold rather than fall back: ActiveMQ refuses the worker's own re-sends (a retry, a dead
letter, a hot site's move) like any producer's SEND once a memory or store limit is reached.
Sent again at once with the ACKs of their originals, they were refused again, the transaction
rolled back, the originals were redelivered and *ran again*, and the broker stayed full: a
livelock (issue 18).  Held here, the originals stay unacked on the live consuming connection:
the broker neither redelivers them (the connection is alive; ActiveMQ keeps it open after such a
refusal) nor sends this worker more than its prefetch window holds, which is the backpressure a
full broker needs.  The re-sends are tried again, all in one transaction, with a backoff; their
originals are ACKed once a commit of them is confirmed.  A lost connection or a stop drops what
is held: the broker redelivers those originals (at least once, never lost).

Pure bookkeeping (no thread, no lock, the clock passed in): the settlement writer's thread alone
uses it (:mod:`statusq.queues.stomp.settler`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statusq.queues.stomp.settlements import Resend

log = logging.getLogger(__name__)

FIRST_DELAY = 0.5  # the first try again after a refusal; doubled on each refused try
MOST_DELAY = 10.0


@dataclass(slots=True)
class Holds:
    """One hold episode at a time: from the first refusal as full until a try is confirmed with
    nothing left held.  Logged once at each end, not per item or per try."""

    name: str
    first: float = FIRST_DELAY
    most: float = MOST_DELAY
    generation: int = 0  # the consuming connection the held re-sends' originals arrived on
    resends: list[Resend] = field(default_factory=list)
    trying: int = 0  # held re-sends in a commit not confirmed yet
    delay: float = FIRST_DELAY
    due_at: float = 0.0
    since: float | None = None  # when the episode began; None: no episode
    held_in_all: int = 0  # in this episode (for its closing log line)

    @property
    def active(self) -> bool:
        """The broker refused as full and has not yet taken what was held since."""
        return self.since is not None

    def __len__(self) -> int:
        """How many originals are held unacked (waiting, or in a try not confirmed yet)."""
        return len(self.resends) + self.trying

    def hold(
        self, generation: int, resends: Sequence[Resend], now: float, *, refused_try: bool = False, why: str = ""
    ) -> None:
        """Hold ``resends`` (refused, or written while an episode lasts); a refused try
        (``refused_try``) doubles the delay to the next.  ``why``: for the episode's first line."""
        if generation < self.generation:  # of a connection already replaced: redelivered
            log.info("%s: %d re-send(s) of a lost connection dropped (redelivered)", self.name, len(resends))
            return
        if generation > self.generation:
            self.drop("their connection was replaced")
            self.generation = generation
        if self.since is None:
            self.since, self.delay, self.held_in_all = now, self.first, 0
            self.due_at = now + self.delay
            log.warning(
                "%s: the broker %s: held (retries, dead letters, moves), their originals kept "
                "unacked, tried again every %g-%g s until it takes them",
                self.name,
                why or "holds re-sends unconfirmed",
                self.first,
                self.most,
            )
        if refused_try:
            self.trying = max(0, self.trying - len(resends))
            self.delay = min(self.most, self.delay * 2)
            self.due_at = now + self.delay
            self.resends[:0] = resends  # first again: they were held longest
        else:
            self.resends.extend(resends)
            self.held_in_all += len(resends)

    def overdue(self, generation: int, count: int, now: float) -> None:
        """A commit of ``count`` re-sends without their ACKs has no receipt past its time, on a
        connection still up: held as a try (the broker holds it for want of room)."""
        if generation < self.generation:
            return
        self.hold(generation, [], now)
        self.trying += count
        self.held_in_all += count

    def later(self, now: float) -> None:
        """No way to try now (the side link is down): at the next delay, not doubled."""
        self.due_at = now + self.delay

    def due(self, now: float) -> bool:
        return bool(self.resends) and not self.trying and now >= self.due_at

    def wait_time(self, now: float) -> float | None:
        """How long until the next try is due; None if none is waiting to be tried."""
        if not self.resends or self.trying:
            return None
        return max(0.0, self.due_at - now)

    def take(self) -> list[Resend]:
        """Everything held, for one try (one transaction)."""
        taken, self.resends = self.resends, []
        self.trying += len(taken)
        return taken

    def settled(self, count: int, now: float, *, taken: bool) -> None:
        """A try of ``count`` re-sends is over: ``taken`` (confirmed), or gone another way (sent
        with its ACKs, or dropped with its connection).  Ends the episode once nothing is held."""
        self.trying = max(0, self.trying - count)
        if taken:
            self.delay = self.first
            self.due_at = now  # what was held meanwhile goes at once
        if self.since is not None and not self.resends and not self.trying:
            if taken:
                log.warning(
                    "%s: the broker takes re-sends again: %d held over %.1f s, none run twice",
                    self.name,
                    self.held_in_all,
                    now - self.since,
                )
            else:  # a stop gave up the last try: sent the old way, with their ACKs
                log.info("%s: hold over after %.1f s, the broker never took its last try", self.name, now - self.since)
            self.since = None

    def drop(self, why: str) -> int:
        """Forget what is held (a lost connection, a stop): the broker redelivers the originals."""
        dropped = len(self.resends) + self.trying
        if dropped:
            log.warning(
                "%s: %d held re-send(s) dropped (%s): the broker redelivers their originals", self.name, dropped, why
            )
        self.resends, self.trying, self.since, self.delay = [], 0, None, self.first
        return dropped
