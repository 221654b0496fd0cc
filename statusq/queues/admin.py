"""The operator's side of a backend: :class:`Admin`, what it can do, and what it reports."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from statusq.errors import Unsupported

__all__ = ["Admin", "BacklogRow", "Capability", "DeadLetter"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    site: str
    transport: str
    attempts: int
    error: str
    enqueued_at: float
    dead_at: float
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BacklogRow:
    site: str
    transport: str
    ready: int = 0  # waiting, can run now
    delayed: int = 0  # waiting for a retry's backoff
    in_flight: int = 0  # claimed by a worker
    dead: int = 0


class Capability(enum.StrEnum):
    """What an :class:`Admin` can do; the rest it refuses (:class:`~statusq.errors.Unsupported`)
    or, for counts, reports as unknown."""

    BACKLOG = "count the backlog"  # per site and transport, cheaply
    DEAD_LETTERS = "list dead letters"
    REQUEUE = "requeue dead letters"
    PURGE = "purge dead letters"
    RELEASE_CLAIMS = "release claims"  # give back a dead worker's items at once
    CONTROL = "send control commands"


class Admin:
    """What operators do with a backend (``statusq status``, ``deadletters``, ``control``, the web
    page, the supervisor after a worker died).  This base can do nothing: a backend's admin
    overrides what it declares in :attr:`capabilities`."""

    capabilities: frozenset[Capability] = frozenset()

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def backlog(self) -> list[BacklogRow] | None:
        """Counts per site and transport; None when the backend cannot count them cheaply (a
        broker's queue depths are the broker's to tell: see :mod:`statusq.metrics.activemq`)."""
        return None

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        raise self._unsupported(Capability.DEAD_LETTERS)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead letters back on their queue with a fresh attempt count (None: all)."""
        raise self._unsupported(Capability.REQUEUE)

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters for good (None: all)."""
        raise self._unsupported(Capability.PURGE)

    def release_claims(self, owner: str, reason: str) -> int:
        """Make every item claimed by ``owner`` (a dead worker's :attr:`Consumer.claim_owner`)
        available again at once, its attempt still counted and ``reason`` kept as its last error;
        returns how many.  Called by the supervisor after it reaped the worker, so the items come
        back now rather than after ``claim_timeout``.  Without claims there is nothing to release."""
        return 0

    def send_control(self, text: str) -> None:
        """Broadcast a control command to every daemon (see statusq.control)."""
        raise self._unsupported(Capability.CONTROL)

    def _unsupported(self, capability: Capability) -> Unsupported:
        return Unsupported(f"{type(self).__name__}: this backend cannot {capability.value}")
