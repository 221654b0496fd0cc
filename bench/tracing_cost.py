#!/usr/bin/env python3
"""What tracing costs per item, in the worker's own code path (no broker: the cost is the
middleware's, and a broker's noise would hide microseconds).

Each row runs the real ItemProcessor on a no-op handler over N deliveries, settled with a
consumer that only counts, and reports microseconds per item (the best of R rounds, the least
disturbed by the rest of the machine) and the difference to the first row:

  off            [tracing] enabled = false: no tracing middleware in the chain at all
  on, no parent  the middleware with the SDK's provider, spans made and sampled but exported
                 nowhere (the issue's "console exporter disabled"); items carry no trace context
  on, parent     the same, each item carrying a traceparent header (a traced producer's item)

Usage: bench/tracing_cost.py [--items N] [--rounds R] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from statusq.config import Config
from statusq.handler import QueueHandler
from statusq.item import Delivery, QueueItem
from statusq.middleware import MiddlewareChain
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer
from statusq.registry import HandlerRegistry
from statusq.retry import RetryPolicy
from statusq.sites import SiteTable
from statusq.tracing.middleware import TracingMiddleware

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


def per_item_us(chain: MiddlewareChain, n: int, rounds: int, traced: bool) -> float:
    registry = HandlerRegistry()
    registry.register("noop", NoOp, group="main", plugin="bench")
    sites = SiteTable(Config.model_validate({"sites": {"dir": str(Path(__file__).parent)}}))
    processor = ItemProcessor(registry, sites, RetryPolicy(0, 1.0, 1.0), middleware=chain)
    consumer = Counting()
    best = float("inf")
    for _ in range(rounds):
        batch = deliveries(n, traced)
        started = time.perf_counter()
        for delivery in batch:
            processor.process(delivery, consumer)
        best = min(best, (time.perf_counter() - started) / n * 1e6)
    assert consumer.settled == n * rounds, "every item settled"
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the "done" line per item is the logging's cost, not tracing's
    provider = TracerProvider()  # no span processor: spans are made and ended, sent nowhere
    rows = [
        ("off", MiddlewareChain(), False),
        ("on, no parent", MiddlewareChain([TracingMiddleware("bench", tracer_provider=provider)]), False),
        ("on, parent", MiddlewareChain([TracingMiddleware("bench", tracer_provider=provider)]), True),
    ]
    results = {name: per_item_us(chain, args.items, args.rounds, traced) for name, chain, traced in rows}
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    base = results["off"]
    print(f"tracing cost per item (best of {args.rounds} rounds of {args.items:,} no-op items, in-process)")
    print(f"{'':16}{'us/item':>10}{'+us':>8}")
    for name, value in results.items():
        print(f"{name:16}{value:10.2f}{value - base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
