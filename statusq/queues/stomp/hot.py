"""Which sites flood a shared destination now, as one worker sees them (issue #17).

Shards keep a flooding site from starving the sites of *other* shards; a site that hashes to
the flooder's shard still waits behind its whole backlog.  So a worker counts, per shared
destination (a group's shards and its unsharded queue), the items of each site it takes from
there.  A site of which it took ``hot_after`` within ``hot_window`` seconds is *hot*: its further
items from a shared destination are not run but moved, with every header and their attempt
count, to a destination of the site's own (:meth:`Destinations.for_site`), which the worker
subscribes to and takes from in turn with the shards.  A move costs a SEND and an ACK in one
transaction, far less than running an item, so the shard drains past the flood and the other
sites' items are reached.  A hot site cools once nothing of it was moved or taken from its own
destination for ``hot_cool`` seconds: the worker unsubscribes.

A worker's hot sites outlive it on its host (:mod:`statusq.queues.stomp.hotfile`).
Each worker decides by itself (nothing is announced): a worker that never saw the flood takes
the site's items from the shard as before, and counts them as every worker does.  At most
``hot_sites`` sites are hot at once per worker (each is one more subscription with its own
prefetch window); past that, a flooding site stays in its shard, as without this.

Pure logic with an injectable clock: the consumer (:mod:`statusq.queues.stomp.consumer`) owns
the subscriptions and the moves.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

#: ``cooled`` looks at most this often (seconds): it walks every counted site.
_LOOK_EVERY = 1.0


class HotSites:
    """Keys are the sites' own destinations (a site is hot per group, not across groups)."""

    def __init__(
        self,
        *,
        after: int,
        window: float,
        cool: float,
        most: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self.window = window
        self.cool = cool
        self.most = most
        self.clock = clock
        #: The times of a site's last ``after`` items from shared destinations (not hot yet).
        self._seen: dict[str, deque[float]] = {}
        #: Hot sites, each with the last time something of it was moved or taken.
        self._hot: dict[str, float] = {}
        self._looked = clock()

    def __contains__(self, key: str) -> bool:
        return key in self._hot

    def __len__(self) -> int:
        return len(self._hot)

    def arrived(self, key: str) -> bool:
        """An item of ``key``'s site was taken from a shared destination: True if it is to be
        moved (the site is hot, or became hot with this item)."""
        if self.after <= 0:
            return False
        now = self.clock()
        if key in self._hot:
            self._hot[key] = now
            return True
        times = self._seen.get(key)
        if times is None:
            times = self._seen[key] = deque(maxlen=self.after)
        times.append(now)
        if len(times) < self.after or now - times[0] > self.window or len(self._hot) >= self.most:
            return False
        del self._seen[key]
        self._hot[key] = now
        return True

    def adopt(self, key: str) -> None:
        """Hot now, as another (dead) worker had it: it cools as usual once idle."""
        self._seen.pop(key, None)
        self._hot[key] = self.clock()

    def used(self, key: str) -> None:
        """Something was taken from ``key``'s own destination: it is not idle."""
        if key in self._hot:
            self._hot[key] = self.clock()

    def cooled(self, busy: Callable[[str], bool]) -> list[str]:
        """The hot sites idle for ``cool`` seconds, now forgotten (unsubscribe from them); one
        for which ``busy`` says items are still in hand stays hot.  Also forgets the counts of
        sites not seen for ``window``.  Looks at most once a second (empty list otherwise)."""
        now = self.clock()
        if now - self._looked < _LOOK_EVERY:
            return []
        self._looked = now
        stale = [k for k, times in self._seen.items() if now - times[-1] > self.window]
        for key in stale:
            del self._seen[key]
        cooled = []
        for key, last in list(self._hot.items()):
            if now - last < self.cool:
                continue
            if busy(key):
                self._hot[key] = now
                continue
            del self._hot[key]
            cooled.append(key)
        return cooled


class MovesFirst:
    """Whether a hot site's own destination waits for its turn now: while this worker is moving
    (a move within ``gap`` seconds: the shard's next frames are on their way), it gets one turn
    per ``per_turn`` moves, so a flood's backlog is moved past before many of its items run,
    and the sites behind it in its shard are reached sooner.  Once the moves stop, all of its
    turns; while a site floods without a pause, still one item per ``per_turn`` of its moved.

    Why: with a handler that takes less time than a move's round trip to the broker (a prefetch
    window is re-filled only once its moves are committed), the worker ran the hot site's items
    from its own destination while waiting for the shard, and the quiet site in the flooder's
    shard was reached after 82% to 98% of the flood instead of before 10% (issue #17's test)."""

    def __init__(self, *, gap: float, per_turn: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.gap = gap
        self.per_turn = per_turn
        self.clock = clock
        self._last_move = float("-inf")
        self._moves = 0  # since a hot site's item was last handed out

    def moved(self) -> None:
        self._last_move = self.clock()
        self._moves += 1

    def served(self) -> None:
        """A hot site's item was handed out."""
        self._moves = 0

    def holding(self) -> bool:
        return self._moves < self.per_turn and self.clock() - self._last_move <= self.gap
