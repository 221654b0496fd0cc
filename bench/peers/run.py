#!/usr/bin/env python3
"""statusq beside Celery (threads and prefork pools) and Dramatiq, on one RabbitMQ node, in one run.

Run by `make bench` (and alone by `make bench-peers`) with the product's venv; Celery and Dramatiq
come from the bench venv (.bench-venv, made from bench/peers/requirements.txt by the Makefile).
Every system uses the suite's private RabbitMQ node: statusq over STOMP (61614), the peers over
AMQP (5673).  Four scenarios, each one table:

  noop     no-op handler, items queued first: one process taking one item at a time, and two
           processes at each system's default concurrency (prefetch 100 per worker process)
  io       handler sleeps 50 ms, 2,000 items, two processes with 16 in hand in all; and
           statusq's async handler with 200 in hand in one process
  enqueue  one producer, one item at a time, each confirmed by the broker
  latency  enqueue -> handler start on an idle worker, p50 / p99

Every handled item is recorded (one line per item) and counted against what was sent; a row
that lost an item is marked FAILED and the bench exits 1.  Ratios are against the best peer
(best non-statusq row) of the row's group.  Figures on a shared 2-core machine move by +-30%
between runs: read the ratios, measured minutes apart on the same broker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import report
import scenarios
from harness import BenchFailure, Harness, Outcome
from scenarios import Sizes, Unsupported
from systems import ROOT, STATUSQ, Row, Systems

sys.path.insert(0, str(ROOT))  # statusq from this checkout
from statusq.config import DaemonConfig

SCENARIOS = ("noop", "io", "enqueue", "latency")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


#: One row of a table: its group, the row, and the call that measures it once.
Plan = tuple[str, Row, Callable[..., Outcome], tuple[Any, ...]]


def measure(row: Row, failures: list[str], how: Callable[..., Outcome], args: tuple[Any, ...]) -> Outcome:
    """``how(*args)`` for one row; a failure is reported in its row and remembered, and the
    bench goes on with the next row."""
    started = time.monotonic()
    try:
        outcome = how(*args)
    except Unsupported as exc:
        print(f"  {row.label}: skipped, {exc}", flush=True)
        return Outcome(row, skipped=str(exc))
    except BenchFailure as exc:
        failures.append(str(exc))
        print(f"  FAILED {row.label}: {exc}", file=sys.stderr, flush=True)
        return Outcome(row, skipped=f"FAILED: {str(exc).splitlines()[0]}")
    extra = f", p99 {outcome.value2:.1f}" if outcome.value2 else ""
    print(f"  {row.label}: {outcome.value:,.1f}{extra} ({time.monotonic() - started:.0f}s)", flush=True)
    return outcome


def run_table(plans: list[Plan], rounds: int, failures: list[str]) -> report.Table:
    """Every row ``rounds`` times, the order rotated each round (a broker still busy with the
    previous row, or a neighbour's load, must not always fall on the same row); the median."""
    results: list[list[Outcome]] = [[] for _ in plans]
    for r in range(rounds):
        order = list(range(len(plans)))
        for i in order[r % len(order) :] + order[: r % len(order)]:
            _, row, how, args = plans[i]
            results[i].append(measure(row, failures, how, args))
    return [(plan[0], combine(outcomes)) for plan, outcomes in zip(plans, results, strict=True)]


def combine(outcomes: list[Outcome]) -> Outcome:
    """The median of a row's rounds; a round that failed or was skipped stands for the row."""
    for o in outcomes:
        if o.skipped:
            return o
    first = outcomes[0]
    notes = list(dict.fromkeys(n for o in outcomes for n in o.notes))
    if len(outcomes) > 1:
        notes.append(
            "rounds: " + ", ".join(f"{o.value:,.0f}" if o.value >= 100 else f"{o.value:.1f}" for o in outcomes)
        )
    return Outcome(
        first.row,
        value=statistics.median(o.value for o in outcomes),
        value2=statistics.median(o.value2 for o in outcomes),
        items=first.items,
        notes=notes,
    )


def noop_plans(h: Harness, sizes: Sizes) -> list[Plan]:
    args = (sizes.noop, 0.0, scenarios.NOOP_PREFETCH, None)
    return [(g, r, scenarios.throughput, (h, r, *args)) for g, r in scenarios.noop_rows()]


def io_plans(h: Harness, sizes: Sizes, has_concurrency: bool) -> list[Plan]:
    plans: list[Plan] = []
    for group, row in scenarios.io_rows(has_concurrency):
        if row.transport == "peer_async" and not has_concurrency:
            why = "needs [daemon] concurrency, which this statusq lacks"
            plans.append((group, row, scenarios.unsupported, (why,)))
        elif row.transport == "peer_async":
            plans.append((group, row, scenarios.async_throughput, (h, row, sizes.io)))
        elif row.system == STATUSQ and not has_concurrency:
            plans.append((group, row, scenarios.throughput, (h, row, sizes.io_serial, scenarios.IO_SLEEP, None, None)))
        else:
            concurrency = row.concurrency if row.system == STATUSQ else None
            args = (h, row, sizes.io, scenarios.IO_SLEEP, None, concurrency)
            plans.append((group, row, scenarios.throughput, args))
    return plans


def header(systems: Systems) -> str:
    done = subprocess.run(
        [systems.python("celery"), str(Path(__file__).with_name("rabbit.py")), "versions"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"peer bench: cannot reach RabbitMQ on 127.0.0.1:5673 or the bench venv: {done.stderr[-500:]}")
    v = json.loads(done.stdout)
    return (
        f"statusq peer bench {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: {os.cpu_count()} CPUs "
        f"({cpu_model()}), Python {platform.python_version()}, RabbitMQ {v['rabbitmq']} "
        f"(statusq STOMP 61614; Celery {v['celery']} and Dramatiq {v['dramatiq']} AMQP 5673)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS), help="scenarios to run")
    parser.add_argument("--noop-items", type=int, default=Sizes.noop)
    parser.add_argument("--io-items", type=int, default=Sizes.io)
    parser.add_argument("--enqueue-items", type=int, default=Sizes.enqueue)
    parser.add_argument("--samples", type=int, default=Sizes.samples, help="latency samples per row")
    parser.add_argument("--bench-venv", type=Path, default=ROOT / ".bench-venv")
    parser.add_argument("--rounds", type=int, default=1, help="measure every row this many times; the median")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (configs, tallies, worker logs)")
    args = parser.parse_args()
    if not (args.bench_venv / "bin" / "celery").exists():
        raise SystemExit(f"peer bench: no Celery in {args.bench_venv}: `make bench-peers` creates it")
    sizes = Sizes(noop=args.noop_items, io=args.io_items, enqueue=args.enqueue_items, samples=args.samples)
    systems = Systems(args.bench_venv)
    has_concurrency = "concurrency" in DaemonConfig.model_fields
    print(header(systems), flush=True)
    print(f"statusq [daemon] concurrency: {'yes' if has_concurrency else 'no (I/O row at concurrency 1)'}")
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="statusq-peers-"))
    h = Harness(systems, work)
    plans: dict[str, Callable[[], list[Plan]]] = {
        "noop": lambda: noop_plans(h, sizes),
        "io": lambda: io_plans(h, sizes, has_concurrency),
        "enqueue": lambda: [(g, r, scenarios.enqueue_rate, (h, r, sizes.enqueue)) for g, r in scenarios.enqueue_rows()],
        "latency": lambda: [(g, r, scenarios.latency, (h, r, sizes.samples)) for g, r in scenarios.latency_rows()],
    }
    tables = {name: run_table(plans[name](), args.rounds, failures) for name in SCENARIOS if name in args.only}
    # The tables together at the end, ready to paste.
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    if "noop" in tables:
        report.rates(f"No-op throughput, {sizes.noop:,} items{rounds}", tables["noop"])
    if "io" in tables:
        report.rates(f"I/O-bound: handler sleeps 50 ms, {sizes.io:,} items{rounds}", tables["io"])
    if "enqueue" in tables:
        title = f"Confirmed enqueue, one at a time, one producer, {sizes.enqueue:,} items{rounds}"
        report.rates(title, tables["enqueue"], "enqueues/s")
    if "latency" in tables:
        report.latencies(
            f"Enqueue -> handler start on an idle worker, {sizes.samples} items{rounds}", tables["latency"]
        )
    if args.keep or failures:
        print(f"\nwork folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"\npeer bench FAILED: {len(failures)} row(s) lost items or did not run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
