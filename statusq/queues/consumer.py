"""The worker's side of a backend: what it subscribes to, and what it takes items and control
commands through.

Apart from :mod:`statusq.queues.base` (the producer's template and the operator's calls) because
a worker's loop needs only these: :class:`Subscription` in, a :class:`Consumer` and a
:class:`ControlChannel` out.  Each backend's ``consumer.py`` implements :class:`Consumer`.
"""

from __future__ import annotations

import abc
import logging
import math
from dataclasses import dataclass

from statusq.item import Delivery

# The name this logged under before it left statusq.queues.base: [log.levels] settings keep working.
log = logging.getLogger("statusq.queues.base")


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a worker wants: None means everything (all sites, all transports)."""

    transports: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    #: Handler groups served (brokers subscribe per group destination); None: every group.
    groups: frozenset[str] | None = None
    #: Also take items whose transport no plugin registered, to dead-letter them with a reason
    #: instead of leaving them queued forever.  Only the default group's workers do this.
    catch_unknown: bool = False
    known_transports: frozenset[str] = frozenset()


#: A control message as received: its headers and body.
ControlMessage = tuple[dict[str, str], bytes]


class Consumer(abc.ABC):
    """One worker's deliveries: fetch, and settle each one; nothing else (control commands come
    through a :class:`ControlChannel`, counts through an :class:`Admin`)."""

    def filenos(self) -> list[int]:
        """Descriptors that become readable when items may have arrived (empty: poll only)."""
        return []

    def drain_wakeups(self) -> None:
        """Consume whatever made :meth:`filenos` readable."""

    @abc.abstractmethod
    def fetch(self) -> Delivery | None:
        """The next delivery, or None at once when nothing is ready (never blocks)."""

    @abc.abstractmethod
    def ack(self, delivery: Delivery) -> None:
        """The handler finished: the item is gone for good."""

    @abc.abstractmethod
    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        """Make the item available again after ``delay`` seconds, its attempt counted."""

    @abc.abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Park the item where operators can see, requeue or purge it."""

    def defer(self, delivery: Delivery, delay: float, reason: str) -> None:
        """Make the item available again after ``delay`` seconds, its attempt NOT counted: it
        was not run (a pause holds it).  This fallback counts it (a plain retry); every backend
        of statusq overrides it."""
        log.warning("id=%s: %s cannot defer without counting an attempt", delivery.id, type(self).__name__)
        self.retry(delivery, delay, reason)

    @property
    def claim_owner(self) -> str | None:
        """The name this consumer's claims are recorded under, so that a supervisor can give back
        what a dead worker held (:meth:`Admin.release_claims`).  None: the backend does that by
        itself (a broker redelivers a lost connection's unacked messages)."""
        return None

    def reachable(self) -> bool:
        """False while the backend is known to be out of reach (a broker connection down):
        ``--idle-exit`` does not count that time as idle, since the work may be waiting there."""
        return True

    def counts_in_place(self) -> bool:
        """True while a redelivered item's attempt cannot be counted by a re-send (a full broker
        refuses them): the listener then counts it in memory and runs the item at once."""
        return False

    def release(self) -> None:
        """Hand back anything fetched ahead but not yet handled (graceful shutdown)."""

    def close(self) -> None:
        """Release and disconnect."""
        self.release()


class ControlChannel(abc.ABC):
    """One worker's subscription to the control broadcast, apart from its items: a command is
    neither queued behind prefetched items nor takes their turn (:mod:`statusq.control`)."""

    def filenos(self) -> list[int]:
        """Descriptors that become readable when a message may have arrived."""
        return []

    def drain_wakeups(self) -> None:
        """Consume whatever made :meth:`filenos` readable."""

    @abc.abstractmethod
    def pending(self) -> bool:
        """True when messages wait for :meth:`take` (cheap: asked between items)."""

    @abc.abstractmethod
    def take(self) -> list[ControlMessage]:
        """Messages received since the last call, oldest first (never blocks)."""

    def timeout(self) -> float:
        """Seconds until :meth:`take` is wanted even without I/O (a reconnect due): 0 while
        messages wait."""
        return 0.0 if self.pending() else math.inf

    def close(self) -> None:
        """Unsubscribe and disconnect."""
