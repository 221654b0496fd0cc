#!/usr/bin/env python3
"""What tracing costs per item, in statusq's own code path (no broker: the cost is the
middleware's, and a broker's noise would hide microseconds).

The worker's side runs the real ItemProcessor on a no-op handler over N deliveries, settled with
a consumer that only counts; the producer's side runs the chain's ``before_enqueue`` over N
messages.  Each round runs every row once, one after the other (off, on, off, on...), so a burst
of load from the rest of a shared machine falls on all rows alike; the table gives, per row, the
median over the rounds of its microseconds per item, the best round, and the median's
difference to its side's ``off`` row:

  worker  off            [tracing] enabled = false: no tracing middleware in the chain at all
  worker  on, no parent  the middleware with the provider a worker sets up (statusq.tracing.setup,
                         sample_ratio 1) for ``exporter = "none"``: spans made and sampled but
                         exported nowhere (the issue's "console exporter disabled"); items carry
                         no trace context
  worker  on, parent     the same, each item carrying a traceparent header (a traced producer's)
  enqueue off            no middleware
  enqueue on, no span    the middleware, no span current (nothing to write)
  enqueue on, span       the middleware, the application's span current: traceparent written
  sdk     start_span     the SDK's own span on the same provider, for comparison: the tracer's
                         start_span with the item's eight attributes, one set_attribute, end

Usage: bench/tracing_cost.py [--items N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from statusq.config import Config, TracingConfig
from statusq.handler import QueueHandler
from statusq.item import Delivery, Message, QueueItem
from statusq.middleware import MiddlewareChain
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from statusq.tracing.middleware import TracingMiddleware
from statusq.tracing.setup import _provider

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class NoOp(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        return True


class Counting(Consumer):
    def __init__(self) -> None:
        self.settled = 0

    def fetch(self) -> Delivery | None:
        return None

    def ack(self, delivery: Delivery) -> None:
        self.settled += 1

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.settled += 1

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.settled += 1


def deliveries(n: int, traced: bool) -> list[Delivery]:
    headers = {"traceparent": PARENT} if traced else {}
    now = time.time()
    return [
        Delivery(f"id-{i}", "example.org", "noop", b"{}", "application/json", dict(headers), 1, now) for i in range(n)
    ]


def worker_round(chain: MiddlewareChain, traced: bool) -> Callable[[int], float]:
    """One round of the worker's side: microseconds per item over n items."""
    registry = HandlerRegistry()
    registry.register("noop", NoOp, group="main", plugin="bench")
    sites = SiteTable(Config.model_validate({"sites": {"dir": str(Path(__file__).parent)}}))
    processor = ItemProcessor(registry, sites, RetryPolicy(0, 1.0, 1.0), middleware=chain)

    def run(n: int) -> float:
        consumer = Counting()
        batch = deliveries(n, traced)
        started = time.perf_counter()
        for delivery in batch:
            processor.process(delivery, consumer)
        elapsed = time.perf_counter() - started
        assert consumer.settled == n, "every item settled"
        return elapsed / n * 1e6

    return run


def enqueue_round(chain: MiddlewareChain, provider: TracerProvider | None) -> Callable[[int], float]:
    """One round of the producer's side (the chain's before_enqueue), with the application's span
    current when a provider is given."""

    def run(n: int) -> float:
        batch = [Message("example.org", "noop", b"{}", "application/json", {}, 0) for _ in range(n)]
        span = provider.get_tracer("the application").start_span("POST /notice") if provider else None
        with trace.use_span(span) if span is not None else nullcontext():
            started = time.perf_counter()
            for message in batch:
                chain.before_enqueue(message)
            elapsed = time.perf_counter() - started
        assert (provider is None) or all("traceparent" in m.headers for m in batch), "context written"
        return elapsed / n * 1e6

    return run


def sdk_round(provider: TracerProvider) -> Callable[[int], float]:
    """The SDK's own span with the attributes of an item's, made and ended n times."""
    tracer = provider.get_tracer("the SDK alone")
    attributes = {
        "messaging.system": "statusq",
        "messaging.operation.type": "process",
        "messaging.destination.name": "noop",
        "messaging.message.id": "id-1",
        "statusq.site": "example.org",
        "statusq.transport": "noop",
        "statusq.attempt": 1,
        "statusq.backend": "bench",
    }

    def run(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            span = tracer.start_span("process noop", kind=trace.SpanKind.CONSUMER, attributes=attributes)
            span.set_attribute("statusq.outcome", "done")
            span.end()
        return (time.perf_counter() - started) / n * 1e6

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the "done" line per item is the logging's cost, not tracing's
    provider = _provider(TracingConfig(enabled=True, exporter="none"))  # no span processor: sent nowhere
    traced = MiddlewareChain([TracingMiddleware("bench", tracer_provider=provider)])
    rows: dict[str, Callable[[int], float]] = {
        "worker  off": worker_round(MiddlewareChain(), False),
        "worker  on, no parent": worker_round(traced, False),
        "worker  on, parent": worker_round(traced, True),
        "enqueue off": enqueue_round(MiddlewareChain(), None),
        "enqueue on, no span": enqueue_round(traced, None),
        "enqueue on, span": enqueue_round(traced, provider),
        "sdk     start_span": sdk_round(provider),
    }
    for run in rows.values():
        run(min(args.items, 1000))  # warm-up: first calls, caches
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.rounds):
        for name, run in rows.items():
            samples[name].append(run(args.items))
    results = {name: {"median": statistics.median(values), "best": min(values)} for name, values in samples.items()}
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(f"tracing cost per item (median and best of {args.rounds} alternating rounds of {args.items:,} items)")
    print(f"{'':24}{'median us':>10}{'best us':>9}{'+us':>8}")
    for name, result in results.items():
        side = name.split()[0]
        base = results[f"{side:8}off"]["median"] if side != "sdk" else 0.0
        print(f"{name:24}{result['median']:10.2f}{result['best']:9.2f}{result['median'] - base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
