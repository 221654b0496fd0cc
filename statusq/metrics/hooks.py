"""The worker's side of the metrics model: an item hook, and the counters beside the item path.

The hook runs twice for every item, so it keeps each label combination's child series in a dict
of its own (prometheus-client's ``labels()`` validates and locks on every call), adds up the
item path's counts and timings in plain integers that :meth:`MetricsHooks.flush` writes to the
series a few times a second (each write into a multiprocess file takes a lock and packs a
struct: five per item cost a quarter of a no-op item's time), and sends at most one statsd
datagram per item.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Collection
from typing import Any

from statusq.item import Delivery, Message
from statusq.metrics.labels import SiteLabels
from statusq.metrics.model import OUTCOMES, UNKNOWN_TRANSPORT, ItemMetrics
from statusq.metrics.statsd import Statsd, counter, timing
from statusq.middleware import Middleware
from statusq.outcome import Failure, Held, Outcome, Result

#: Failures after which the handler ran, so its time is worth a histogram sample.
_HANDLER_RAN = frozenset(
    {Failure.HANDLER_ERROR, Failure.HANDLER_FALSE, Failure.TIME_LIMIT, Failure.HANDLER_RETRY, Failure.HANDLER_REJECT}
)
#: Label combinations remembered before starting over (10,000 sites x transports x outcomes).
_CACHE_MAX = 50_000
#: Longest a count waits in memory before it reaches the series (seconds).
FLUSH_DELAY = 0.05


class _Samples:
    """A histogram child's observations since the last flush, bucketed as prometheus-client does
    (the first bucket whose bound is >= the value)."""

    __slots__ = ("bounds", "counts", "sum", "values")

    def __init__(self, child: Any) -> None:
        # The series' own buckets and sum values, written in bulk at flush; a prometheus-client
        # without them (a future version) gets one observe() per sample instead.
        self.bounds: list[float] | None = getattr(child, "_upper_bounds", None)
        if not (self.bounds and hasattr(child, "_buckets") and hasattr(child, "_sum")):
            self.bounds = None
        self.counts = [0] * len(self.bounds or ())
        self.sum = 0.0
        self.values: list[float] = []

    def add(self, value: float) -> None:
        if self.bounds is None:
            self.values.append(value)
            return
        index = bisect.bisect_left(self.bounds, value)
        self.counts[min(index, len(self.counts) - 1)] += 1
        self.sum += value

    def write(self, child: Any) -> None:
        if self.bounds is None:
            for value in self.values:
                child.observe(value)
            return
        for bucket, count in zip(child._buckets, self.counts, strict=True):
            if count:
                bucket.inc(count)
        child._sum.inc(self.sum)


class MetricsHooks(Middleware):
    """Counts every settled item and times its handler; statsd gets the same events."""

    def __init__(
        self,
        model: ItemMetrics,
        sites: SiteLabels,
        transports: Collection[str],
        statsd: Statsd | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.sites = sites
        self.transports = frozenset(transports)
        self.statsd = statsd
        self.clock = clock
        self._site: str | None = None
        self._latency_lines: list[str] = []
        self._last_handled = 0.0
        self._items: dict[tuple[str, str, Outcome], Any] = {}
        self._errors: dict[tuple[str, str, Failure], Any] = {}
        self._held: dict[tuple[str, str, str], Any] = {}
        self._enqueued: dict[tuple[str, str], Any] = {}
        self._handling: dict[str, Any] = {}
        self._latency: dict[str, Any] = {}
        #: Counts and timings not yet written to their series (see :meth:`flush`), and since when.
        self._counts: dict[Any, int] = {}
        self._samples: dict[Any, _Samples] = {}
        self.dirty_since: float | None = None

    def transport(self, name: str) -> str:
        return name if name in self.transports else UNKNOWN_TRANSPORT

    def before_item(self, delivery: Delivery) -> None:
        if delivery.site != self._site:
            if self._site is not None:
                self._count(self.model.site_switches)
            self._site = delivery.site
        if delivery.attempt != 1:
            return  # a retry waited for its backoff on purpose: not latency
        latency = max(0.0, self.clock() - delivery.enqueued_at)
        child = self._latency.get(delivery.transport)
        if child is None:
            child = self._latency[delivery.transport] = self.model.latency.labels(self.transport(delivery.transport))
        self._observe(child, latency)
        if self.statsd is not None:  # sent with the outcome: one datagram per item
            # Sent with the next outcome, whichever item's it is (several may be in hand).
            self._latency_lines.append(timing(self.statsd.name("latency", self.transport(delivery.transport)), latency))

    def after_item(self, delivery: Delivery, result: Result) -> None:
        site, transport, outcome, kind = delivery.site, delivery.transport, result.outcome, result.kind
        items = self._items.get((site, transport, outcome))
        if items is None:
            items = self._child(self._items, (site, transport, outcome), self.model.items, OUTCOMES[outcome])
        self._count(items)
        if kind is not None:
            errors = self._errors.get((site, transport, kind))
            if errors is None:
                errors = self._child(self._errors, (site, transport, kind), self.model.errors, kind.value)
            self._count(errors)
        if isinstance(result, Held):
            held = self._held.get((site, transport, result.limit))
            if held is None:
                held = self._child(self._held, (site, transport, result.limit), self.model.flow_held, result.limit)
            self._count(held)
        ran = outcome is not Outcome.HOLD and outcome is not Outcome.DROPPED and (kind is None or kind in _HANDLER_RAN)
        if ran:
            handling = self._handling.get(transport)
            if handling is None:
                handling = self._handling[transport] = self.model.handling.labels(self.transport(transport))
            self._observe(handling, result.duration)
        if outcome is Outcome.DONE:
            now = self.clock()
            if now - self._last_handled >= 1.0:  # to the second: one file write fewer per item
                self._last_handled = now
                self.model.last_handled.set(now)
        if self.statsd is not None:
            self._send(transport, result, ran)

    def _count(self, child: Any) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0) + 1
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    def _observe(self, child: Any, value: float) -> None:
        samples = self._samples.get(child)
        if samples is None:
            samples = self._samples[child] = _Samples(child)
        samples.add(value)
        if self.dirty_since is None:
            self.dirty_since = time.monotonic()

    def flush(self) -> None:
        """Write the counts and timings held in memory to their series.  The worker's loop calls
        it :data:`FLUSH_DELAY` after the first of them, and at exit; a worker killed with SIGKILL
        loses at most that much of its counting (never an item)."""
        self.dirty_since = None
        counts, self._counts = self._counts, {}
        samples, self._samples = self._samples, {}
        for child, count in counts.items():
            child.inc(count)
        for child, held in samples.items():
            held.write(child)

    def _child(self, cache: dict[Any, Any], key: tuple[str, str, Any], family: Any, last: str) -> Any:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        child = cache[key] = family.labels(self.sites(key[0]), self.transport(key[1]), last)
        return child

    def _send(self, transport: str, result: Result, ran: bool) -> None:
        statsd = self.statsd
        assert statsd is not None
        label, outcome = self.transport(transport), OUTCOMES[result.outcome]
        lines = [counter(statsd.name("items", outcome)), counter(statsd.name("items", label, outcome))]
        if result.kind is not None:
            lines.append(counter(statsd.name("errors", result.kind.value)))
        if ran:
            lines.append(timing(statsd.name("handling", label), result.duration))
        if self._latency_lines:
            lines.extend(self._latency_lines)
            self._latency_lines.clear()
        statsd.send(*lines)

    # -- beside the item path ----------------------------------------------------------------

    def after_enqueue(self, message: Message) -> None:
        """An item was enqueued by this process (a plugin, the dispatcher)."""
        site, transport = message.site, message.transport
        child = self._enqueued.get((site, transport))
        if child is None:
            if len(self._enqueued) >= _CACHE_MAX:
                self._enqueued.clear()
            child = self._enqueued[site, transport] = self.model.enqueued.labels(
                self.sites(site), self.transport(transport)
            )
        child.inc()
        if self.statsd is not None:
            self.statsd.send(counter(self.statsd.name("enqueued", self.transport(transport))))

    def after_control(self, command: str, result: str) -> None:
        """A control message was applied or refused (``command`` is one of a closed set)."""
        self.model.control.labels(command, result).inc()
        if self.statsd is not None:
            self.statsd.send(counter(self.statsd.name("control", command, result)))
