"""Global rate limits and concurrency caps, in every worker, on every backend.

The processor asks :meth:`FlowGate.admit` last, once the item is decoded and its handler known,
just before the handler runs.  An item over a limit is neither run nor failed: its result is a
:class:`~statusq.outcome.Held` hold, settled by :meth:`statusq.queues.base.Consumer.defer` (offered
again after the delay computed here, its attempt *not* counted), exactly as a pause holds.  The
state is the shared store's (:mod:`statusq.queues.db.flow`, at ``db_url``), so the limits hold
across every worker and host.

- rate limits (GCRA): ``[transports.NAME] rate_limit``, a site's (``[sites] rate_limit``, a
  site file's ``rate_limit``), and per rate key (``[transports.NAME] key_rate_limit``: the
  handler's :meth:`~statusq.QueueHandler.rate_key`).  A held item waits until its place in line
  (the store's ``wait_tat``), at most ``[queue] rate_hold_max``;
- concurrency caps: ``[transports.NAME] max_concurrent`` slots, cluster-wide or per host.  A slot
  is taken here and given back in :meth:`release` when the item is settled; while it runs a thread
  renews its lease (``[queue] flow_lease``), so a killed worker's slot frees itself.

A store that cannot be reached holds the item (for ``cap_hold``): a limit protects something,
and running everything while the database is down would break it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from statusq import defaults
from statusq.config import Config, SiteConfig
from statusq.errors import StatusqError
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.outcome import Held, Outcome
from statusq.queues.db.flow import FlowStore, Lease
from statusq.ticker import Ticker
from statusq.units import parse_rate

log = logging.getLogger(__name__)

#: How often (seconds) the info line that a limit holds items may be repeated per limit.
NOTE_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit as GCRA reads it: one item per ``interval``, ``burst`` at once."""

    text: str
    interval: float
    burst: int

    @classmethod
    def parse(cls, text: str | None, burst: int) -> Rate | None:
        if text is None or text == "none":
            return None
        count, period = parse_rate(text)
        return cls(text, period / count, burst)

    @property
    def tolerance(self) -> float:
        return (self.burst - 1) * self.interval


@dataclass(frozen=True, slots=True)
class Cap:
    scope: str  # the store's name of the cap: per transport, and per host with scope "host"
    limit: int


class FlowGate:
    """One worker's rate limits and caps, read from the config; the store opened when first
    needed (``store``), so a worker without limits never touches it."""

    def __init__(
        self,
        config: Config,
        store: Callable[[], FlowStore],
        *,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.open_store = store
        self.clock = clock
        self.uniform = uniform
        queue = config.queue
        self.lease_time, self.cap_hold, self.hold_max = queue.flow_lease, queue.cap_hold, queue.rate_hold_max
        host = host or socket.gethostname()
        self.holder = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.transport_rates: dict[str, Rate] = {}
        self.key_rates: dict[str, Rate] = {}
        self.caps: dict[str, Cap] = {}
        for name, t in config.transports.items():
            if (rate := Rate.parse(t.rate_limit, t.rate_burst)) is not None:
                self.transport_rates[name] = rate
            if (rate := Rate.parse(t.key_rate_limit, t.key_rate_burst)) is not None:
                self.key_rates[name] = rate
            if t.max_concurrent is not None:
                scope = f"{name}@{host}" if t.concurrency_scope == "host" else name
                self.caps[name] = Cap(scope, t.max_concurrent)
        self.sites = config.sites
        #: Any limit from the config: without one, only a site file's own limit is looked for.
        self._configured = self.limits()
        self._site_rates: dict[tuple[str | None, int | None], Rate | None] = {}
        self._store: FlowStore | None = None
        self._leases: dict[int, Lease] = {}  # id(delivery) -> the slot it holds while it runs
        self._keeper: Ticker | None = None
        self._noted: dict[str, tuple[float, int]] = {}
        self._next_prune = 0.0  # the clock's time this worker next forgets idle rate buckets

    def store(self) -> FlowStore:
        if self._store is None:
            self._store = self.open_store()
        return self._store

    def site_rate(self, site: SiteConfig) -> Rate | None:
        """The site file's limit, else ``[sites] rate_limit``, parsed once per distinct value."""
        text = site.rate_limit if site.rate_limit is not None else self.sites.rate_limit
        burst = site.rate_burst if site.rate_burst is not None else self.sites.rate_burst
        key = (text, burst)
        if key not in self._site_rates:
            self._site_rates[key] = Rate.parse(text, burst)
        return self._site_rates[key]

    def limits(self) -> bool:
        """Whether any limit may apply (a site file may add one later: sites are reloaded)."""
        return bool(self.transport_rates or self.key_rates or self.caps or self.sites.rate_limit)

    # -- the check --------------------------------------------------------------------------

    def admit(self, delivery: Delivery, item: QueueItem, handler: QueueHandler, site: SiteConfig) -> Held | None:
        """None: run it (holding its transport's slot, if capped, until :meth:`release`); else
        the hold that makes it wait."""
        if not self._configured and site.rate_limit is None:
            return None  # the common case, once per item: no dictionary looked at
        transport = delivery.transport
        cap = self.caps.get(transport)
        rates: list[tuple[str, str, Rate]] = []
        key_rate = self.key_rates.get(transport)
        if key_rate is not None and (key := handler.rate_key(item)):
            rates.append(("key_rate", f"k:{transport}:{key}", key_rate))
        site_rate = self.site_rate(site)
        if site_rate is not None:
            rates.append(("site_rate", f"s:{delivery.site}", site_rate))
        transport_rate = self.transport_rates.get(transport)
        if transport_rate is not None:
            rates.append(("transport_rate", f"t:{transport}", transport_rate))
        if cap is None and not rates:
            return None
        try:
            return self._admit(delivery, cap, rates)
        except StatusqError as exc:  # a slot taken before the failure expires with its lease
            self._note("store", f"the flow-control store cannot be read ({exc}): items wait")
            return Held(Outcome.HOLD, f"flow-control store unavailable: {exc}", delay=self.cap_hold, limit="store")

    def _admit(self, delivery: Delivery, cap: Cap | None, rates: list[tuple[str, str, Rate]]) -> Held | None:
        store = self.store()
        lease = None
        if cap is not None:
            now = self.clock()
            lease = store.acquire(
                cap.scope,
                cap.limit,
                holder=self.holder,
                lease=uuid.uuid4().hex,
                now=now,
                expires_at=now + self.lease_time,
            )
            if lease is None:
                delay = self.uniform(self.cap_hold / 2, self.cap_hold)
                what = f"transport {delivery.transport}"
                return self._held("concurrency", what, f"{cap.limit} running", delay, delivery.transport)
        if rates:
            self._prune(store)
        for kind, bucket, rate in rates:
            now = self.clock()
            answer = store.take(
                bucket,
                now=now,
                interval=rate.interval,
                tolerance=rate.tolerance,
                horizon=self.hold_max,
                token=uuid.uuid4().hex,
            )
            if answer.allowed:
                continue
            if lease is not None:
                store.release(lease)
            # Its turn: its place in line (wait_tat - interval) less what the burst lets ahead,
            # plus half an interval so that a turn kept to the millisecond is not missed.
            turn = answer.wait_tat - rate.interval - rate.tolerance + rate.interval / 2
            delay = min(max(turn - now, 0.001), self.hold_max)
            what = f"key {bucket[2:]}" if kind == "key_rate" else f"{kind.split('_')[0]} {bucket[2:]}"
            return self._held(kind, what, rate.text, delay, delivery.transport)
        if lease is not None:
            self._leases[id(delivery)] = lease
            self._keep()
        return None

    def _prune(self, store: FlowStore) -> None:
        """Now and then, delete the buckets idle long enough to mean nothing (every worker does,
        each rarely: one DELETE over a table that stays small because of it)."""
        now = self.clock()
        if now < self._next_prune:
            return
        self._next_prune = now + defaults.RATE_PRUNE_EVERY
        try:
            gone = store.prune(now - defaults.RATE_PRUNE_AFTER)
        except StatusqError as exc:  # the check itself decides whether the store works
            log.warning("could not forget idle rate-limit buckets: %s", exc)
            return
        if gone:
            log.debug("forgot %d idle rate-limit bucket(s)", gone)

    def _held(self, kind: str, what: str, limit: str, delay: float, transport: str) -> Held:
        label = "concurrency cap" if kind == "concurrency" else "rate limit"
        if kind == "key_rate":  # one line per transport, not per key: keys are the producers' to multiply
            self._note(f"key_rate {transport}", f"a per-key rate limit of transport {transport} ({limit}) holds items")
        else:
            self._note(f"{kind} {what}", f"{label} of {what} ({limit}) reached: items wait")
        return Held(Outcome.HOLD, f"{label} of {what} ({limit}): again in {delay:.3f}s", delay=delay, limit=kind)

    def _note(self, name: str, message: str) -> None:
        """One info line per limit a minute (with how many were held since), not one per item:
        the per-item line is the processor's, at debug."""
        now = time.monotonic()
        since, count = self._noted.get(name, (-NOTE_EVERY, 0))
        if now - since < NOTE_EVERY:
            self._noted[name] = (since, count + 1)
            return
        self._noted[name] = (now, 0)
        more = f" ({count} more held since the last line)" if count else ""
        log.info("%s%s", message, more)

    # -- slots ------------------------------------------------------------------------------

    def release(self, delivery: Delivery) -> None:
        """The item was settled: its slot, if it holds one, is free at once."""
        lease = self._leases.pop(id(delivery), None)
        if lease is None:
            return
        try:
            self.store().release(lease)
        except StatusqError as exc:
            log.warning(
                "could not give back slot %d of %s (free when its lease ends): %s", lease.slot, lease.scope, exc
            )

    def held_leases(self) -> int:
        return len(self._leases)

    def _keep(self) -> None:
        if self._keeper is None:
            # Its own thread: the loop's may be inside a handler for as long as the item runs.
            self._keeper = Ticker("statusq-lease-keeper", self.lease_time / 3, self.renew)
            self._keeper.start()

    def renew(self) -> None:
        """Push back the expiry of this worker's slots (the keeper's thread)."""
        if self._leases:
            self.store().renew(self.holder, self.clock() + self.lease_time)

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
        if self._store is not None:
            try:
                if self._leases:
                    self._store.release_all(self.holder)
            except StatusqError as exc:
                log.warning("could not give back this worker's slots (free when their leases end): %s", exc)
            self._store.close()
            self._store = None
