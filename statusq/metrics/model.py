"""The series a worker keeps (``docs/metrics.md`` is the contract every exporter reads).

In a daemon every worker writes its values into files in the supervisor's metrics folder
(prometheus-client's multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``), and the supervisor adds
them up at scrape time.  Anywhere else (``statusq enqueue``, tests, an application embedding a
worker) the values stay in this process's own registry.

The series are created by :class:`ItemMetrics`, never at import: prometheus-client picks how
values are stored when a series is created, and a worker is forked from a supervisor that may have
imported prometheus-client before it knew of any folder.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values

from statusq.metrics import MULTIPROC_ENV
from statusq.outcome import Outcome

#: ``outcome`` label values, per processor outcome.
OUTCOMES = {
    Outcome.DONE: "handled",
    Outcome.RETRY: "retried",
    Outcome.DEAD: "dead_lettered",
    Outcome.HOLD: "held",  # paused: handed back, not run, attempt not counted
    Outcome.DROPPED: "dropped",  # cancelled, purged, a keyed duplicate: acked, never run
}
#: The ``transport`` label of an item whose transport no handler is registered for (a producer's
#: typo must not create a series).
UNKNOWN_TRANSPORT = "_unknown"

HANDLING_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def use_multiprocess_files() -> bool:
    """In a daemon's worker, store values in the supervisor's metrics folder; True if so.

    Called in the worker after the fork and before any series exists.  prometheus-client chooses
    its value class once, at import, from the environment; the supervisor may have imported it
    before setting the variable, and a forked child inherits that choice, so it is made again here.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path or not os.path.isdir(path):
        return False
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    return True


class ItemMetrics:
    """What the workers count: items, errors, enqueues, site switches, control commands, timings."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        #: This process's own view (in a daemon the supervisor reads every worker's files instead).
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self.items = Counter(
            "statusq_items", "Items settled, by outcome: handled, retried, dead_lettered.",
            ["site", "transport", "outcome"], registry=reg,
        )  # fmt: skip
        self.errors = Counter(
            "statusq_item_errors", "Failed attempts, by why they failed.", ["site", "transport", "kind"], registry=reg
        )
        self.enqueued = Counter(
            "statusq_enqueued", "Items enqueued by this daemon's processes (not retries).",
            ["site", "transport"], registry=reg,
        )  # fmt: skip
        self.flow_held = Counter(
            "statusq_flow_held", "Items held by a rate limit or a concurrency cap (statusq.flow), by which kind.",
            ["site", "transport", "limit"], registry=reg,
        )  # fmt: skip
        self.site_switches = Counter(
            "statusq_site_switches", "Times a worker's current site changed between two items.", registry=reg
        )
        self.control = Counter(
            "statusq_control_commands", "Control messages, by command and whether they were applied.",
            ["command", "result"], registry=reg,
        )  # fmt: skip
        self.handling = Histogram(
            "statusq_handling_seconds", "Time in the handler.", ["transport"], buckets=HANDLING_BUCKETS, registry=reg
        )
        self.latency = Histogram(
            "statusq_latency_seconds", "From enqueue to the start of an item's first attempt.",
            ["transport"], buckets=LATENCY_BUCKETS, registry=reg,
        )  # fmt: skip
        self.last_handled = Gauge(
            "statusq_last_handled_timestamp_seconds", "When a worker last settled an item as handled (unix time).",
            registry=reg, multiprocess_mode="max",
        )  # fmt: skip
