#!/usr/bin/env python3
"""statusq's throughput and latency against a raw stomp.py baseline measured in the same run.

For each broker (ActiveMQ on 61613, RabbitMQ's STOMP on 61614), same prefetch and ack mode:
  (a) raw:     a bare stomp.py consumer acking N persistent 200-byte messages (client-individual),
       from a queue declared as statusq declares its own (on RabbitMQ a priority queue,
       ``x-max-priority``; before 2026-12-04 evening (a) read a plain queue, (b) a priority one)
  (a') the same consumer with statusq's frame reader (statusq/queues/stomp/frames.py) installed:
       b/a' is what statusq itself costs, apart from the parsing it does faster than stomp.py
  (b) statusq: `statusq daemon`, one worker, a no-op handler, on the same N messages
  (f) as (b), but every 10th item fails once (returns False on its first attempt; retry_delay 0):
       f/b is what retries cost (issue 14's target: >= 0.8)
  (c) latency: enqueue -> handler start, p50/p99, items enqueued one at a time to an idle worker
  (e) enqueue_many: items/s put by `QueueManager.enqueue_many` in batches (default 1,000), each
      batch one transaction confirmed by the broker; beside it the same items enqueued one at a
      time with a receipt each (confirm_sends), measured in the same run (issue 16: >= 20,000/s)
The items are the default site's (what a producer that names no site sends, a single-site
deployment's); ``--site bench.example``: one named site flooding alone, which a worker counts hot
and moves to a destination of its own, item by item (issue 17's hot sites: fairness to sites
queued behind it, at a SEND and a second delivery per item).
Rates count from the first message handled to the last, so connection set-up is left out of
both.  Figures vary by +-30% on shared machines: read the ratio b/a, measured minutes apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import stomp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # statusq from this checkout, for (a') and the latency probe
import statusq  # noqa: E402 -- from the checkout: after the line above
from statusq.defaults import DEFAULT_SITE, STOMP_MAX_PRIORITY, STOMP_SHARDS  # noqa: E402
from statusq.queues.stomp import frames  # noqa: E402
from statusq.queues.stomp.destinations import Destinations, rabbitmq_name  # noqa: E402
from statusq.queues.stomp.link import encode_frame  # noqa: E402

BODY = json.dumps({"pad": "x" * 186}).encode()  # 200 bytes
BROKERS = {"activemq": 61613, "rabbitmq": 61614}
SITE = [DEFAULT_SITE]  # the items' site: ``--site``


def physical(broker: str, destination: str) -> str:
    if broker != "rabbitmq":
        return destination
    return rabbitmq_name(destination)


def connect(port: int, fast_frames: bool = False) -> Any:
    conn = stomp.Connection12([("127.0.0.1", port)], vhost="/", auto_decode=False)
    if fast_frames and not frames.install(conn):
        raise SystemExit("this stomp.py lacks the hook statusq's frame reader needs")
    conn.connect("guest", "guest", wait=True)
    return conn


def fill(port: int, destination: str, n: int, transport: str, queue_args: dict[str, str] | None = None) -> None:
    """N persistent messages as statusq sends them, confirmed by a receipt on the last one.
    ``queue_args``: what statusq declares its queue with (RabbitMQ refuses a SUBSCRIBE whose
    arguments differ from those the queue was made with by the first SEND)."""
    conn = connect(port)
    done = threading.Event()

    class Receipt(stomp.ConnectionListener):  # type: ignore[misc]
        def on_receipt(self, frame: Any) -> None:
            done.set()

    conn.set_listener("r", Receipt())
    headers = {
        "persistent": "true",
        "content-type": "application/json",
        "statusq-transport": transport,
        "statusq-site": SITE[0],
        "statusq-attempt": "1",
        **(queue_args or {}),
    }
    for i in range(n):
        extra = {"receipt": "last"} if i == n - 1 else {}
        conn.send(destination, BODY, headers={**headers, "statusq-id": str(i), **extra})
    if not done.wait(120):
        raise SystemExit("fill: no receipt from the broker")
    conn.disconnect()


def statusq_queue_args(broker: str) -> dict[str, str]:
    """The arguments statusq declares its RabbitMQ work queues with (``[queue.stomp] max_priority``)."""
    return {"x-max-priority": str(STOMP_MAX_PRIORITY)} if broker == "rabbitmq" else {}


def raw_consume(
    port: int, destination: str, n: int, prefetch: int, fast_frames: bool, queue_args: dict[str, str] | None = None
) -> tuple[float, float]:
    """The ceiling: receive and ack, nothing else.  Messages per second, and CPU microseconds
    per message (both threads: stomp.py's receiver and this one).  ``queue_args``: what a queue
    statusq declared must be subscribed with (RabbitMQ refuses other arguments)."""
    frames: queue.SimpleQueue[Any] = queue.SimpleQueue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            frames.put(frame)

    conn = connect(port, fast_frames)
    conn.set_listener("l", Listener())
    window = {"activemq.prefetchSize": str(prefetch), "prefetch-count": str(prefetch), **(queue_args or {})}
    conn.subscribe(destination, "raw", ack="client-individual", headers=window)
    first = frames.get(timeout=60)
    started, started_cpu = time.perf_counter(), time.process_time()
    conn.ack(first.headers["ack"])
    for _ in range(n - 1):
        frame = frames.get(timeout=60)
        json.loads(frame.body)  # the decode any consumer does
        conn.ack(frame.headers["ack"])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    conn.disconnect()
    return (n - 1) / elapsed, cpu / (n - 1) * 1e6


def write_config(folder: Path, broker: str, basename: str, prefetch: int) -> Path:
    path = folder / "statusq.toml"
    path.write_text(
        f"""
[queue]
subsystem = "stomp"
retry_delay = "0s"
[queue.stomp]
servers = ["127.0.0.1:{BROKERS[broker]}"]
username = "guest"
password = "guest"
basename = "{basename}"
control_channel = "/topic/{basename.strip("/").split("/")[-1]}.control"
control_secret = "bench-control-secret-0123"
prefetch = {prefetch}
[plugins]
paths = ["{ROOT / "bench" / "plugins"}"]
[log]
level = "WARNING"
"""
    )
    return path


def daemon(config: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "statusq.cli.main", "--config", str(config), "daemon", "--workers", "1"]
    return subprocess.Popen(argv, env={**os.environ, **env}, stderr=subprocess.DEVNULL)


def rss_mb(pid: int) -> float:
    """The worker's resident memory (the daemon's pid is its supervisor's: take its child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if children:
        pid = int(children[0])
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def statusq_consume(broker: str, n: int, prefetch: int, work: Path, fail_every: int = 0) -> tuple[float, float]:
    basename = f"/queue/bench{uuid.uuid4().hex[:8]}/"
    fill(BROKERS[broker], physical(broker, basename + "main"), n, "noop", statusq_queue_args(broker))
    out = work / f"{broker}-{uuid.uuid4().hex[:8]}.tput"  # fresh per round
    env = {"BENCH_OUT": str(out), "BENCH_EXPECT": str(n), "BENCH_FAIL_EVERY": str(fail_every)}
    proc = daemon(write_config(work, broker, basename, prefetch), env)
    try:
        deadline = time.monotonic() + 600
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        count, seconds, cpu = out.read_text().split()
        return (int(count) - 1) / float(seconds), float(cpu) / (int(count) - 1) * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def latency(broker: str, samples: int, work: Path) -> tuple[float, float, float]:
    """p50 and p99 of enqueue -> handler start, and the idle worker's RSS."""
    basename = f"/queue/lat{uuid.uuid4().hex[:8]}/"
    config = write_config(work, broker, basename, 100)
    out = work / f"{broker}.lat"
    proc = daemon(config, {"BENCH_OUT": str(out)})
    try:
        qm = statusq.connect(config)
        qm.enqueue({}, "latency")  # warm-up: connection and first-item costs
        deadline = time.monotonic() + 60
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        idle_rss = rss_mb(proc.pid)
        out.unlink()
        for _ in range(samples):
            qm.enqueue({}, "latency")
            time.sleep(0.01)
        qm.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().split()) >= samples:
                break
            time.sleep(0.05)
        lags = sorted(float(x) * 1000 for x in out.read_text().split())
        return statistics.median(lags), lags[int(len(lags) * 0.99) - 1], idle_rss
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def stomp_config(work: Path, broker: str, basename: str, confirm: bool = True) -> Path:
    path = work / f"enqueue-{basename.strip('/').split('/')[-1]}.toml"
    path.write_text(
        f"""
[queue]
subsystem = "stomp"
[queue.stomp]
servers = ["127.0.0.1:{BROKERS[broker]}"]
username = "guest"
password = "guest"
basename = "{basename}"
confirm_sends = {"true" if confirm else "false"}
"""
    )
    return path


def raw_batches(broker: str, n: int, batch: int) -> float:
    """The ceiling for (e): the same transactions of persistent 200-byte messages from a bare
    stomp.py connection, frames built in advance and written at once, receipts as statusq asks
    for them (the COMMIT's; on RabbitMQ every SEND's too).  Items/s."""
    port = BROKERS[broker]
    destination = physical(broker, f"/queue/rawenq{uuid.uuid4().hex[:8]}")
    each = broker == "rabbitmq"
    events: dict[str, threading.Event] = {}

    class Receipts(stomp.ConnectionListener):  # type: ignore[misc]
        def on_receipt(self, frame: Any) -> None:
            events[frame.headers["receipt-id"]].set()

    conn = connect(port, fast_frames=True)
    conn.set_listener("r", Receipts())
    headers = {  # what statusq's enqueue sends
        "persistent": "true",
        "content-type": "application/json",
        "statusq-site": "default",
        "statusq-transport": "noop",
        "statusq-attempt": "1",
        "statusq-enqueued-at": f"{time.time():.6f}",
        "priority": "4",
    }
    writes = []
    for first in range(0, n, batch):
        tx, receipts = uuid.uuid4().hex, []
        frames_ = [encode_frame("BEGIN", {"transaction": tx})]
        for i in range(first, min(n, first + batch)):
            extra = {"receipt": f"{tx}-{i}"} if each else {}
            receipts += list(extra.values())
            frames_.append(
                encode_frame("SEND", {**headers, "destination": destination, "transaction": tx, **extra}, BODY)
            )
        frames_.append(encode_frame("COMMIT", {"transaction": tx, "receipt": tx}))
        writes.append((b"".join(frames_), [*receipts, tx]))
    for _, receipts in writes:
        events.update((r, threading.Event()) for r in receipts)
    started = time.perf_counter()
    for data, receipts in writes:
        conn.transport.send(data)
        for receipt in receipts:
            if not events[receipt].wait(60):
                raise SystemExit("raw batches: no receipt from the broker")
    rate = n / (time.perf_counter() - started)
    conn.disconnect()
    raw_consume(port, destination, n, 1000, True)
    return rate


def enqueue_rates(broker: str, n: int, batch: int, work: Path) -> tuple[float, float]:
    """Items/s confirmed: (enqueue_many in batches of ``batch``, enqueue one at a time with a
    receipt each).  Timed from the first call to the last return, after a warm-up enqueue; the
    items are consumed afterwards, so the broker is left as it was."""
    payload = json.loads(BODY)
    rates = []
    for many in (True, False):
        basename = f"/queue/enq{uuid.uuid4().hex[:8]}/"
        count = n if many else max(1, n // 10)  # one at a time is ~10x slower: fewer, same rate
        qm = statusq.connect(stomp_config(work, broker, basename))
        qm.enqueue(payload, "noop")
        started = time.perf_counter()
        if many:
            for first in range(0, count, batch):
                qm.enqueue_many([statusq.Item(payload, "noop") for _ in range(min(batch, count - first))])
        else:
            for _ in range(count):
                qm.enqueue(payload, "noop")
        rates.append(count / (time.perf_counter() - started))
        qm.close()
        # (the default site's shard of the group: where a producer puts its items)
        home = Destinations(basename, [], STOMP_SHARDS).for_group("main", DEFAULT_SITE)
        raw_consume(BROKERS[broker], physical(broker, home), count + 1, 1000, True, statusq_queue_args(broker))
    return rates[0], rates[1]


def raw_round(broker: str, args: argparse.Namespace, fast_frames: bool = False) -> tuple[float, float]:
    port = BROKERS[broker]
    destination = physical(broker, f"/queue/raw{uuid.uuid4().hex[:8]}")
    # The queue statusq's own is (RabbitMQ: a priority queue, x-max-priority), so that b/a is
    # what statusq costs over stomp.py, not what the broker's queue type costs.
    queue_args = statusq_queue_args(broker)
    fill(port, destination, args.messages, "noop", queue_args)
    return raw_consume(port, destination, args.messages, args.prefetch, fast_frames, queue_args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--prefetch", type=int, default=100)
    parser.add_argument("--samples", type=int, default=500, help="latency samples")
    parser.add_argument("--brokers", nargs="+", default=list(BROKERS), choices=list(BROKERS))
    parser.add_argument("--rounds", type=int, default=3, help="a/b pairs per broker, in alternating order")
    parser.add_argument("--batch", type=int, default=1000, help="(e): items per enqueue_many")
    parser.add_argument("--enqueue-only", action="store_true", help="only (e), the producer's rates")
    parser.add_argument("--site", default=DEFAULT_SITE, help="the items' site (a named one floods alone: moved)")
    args = parser.parse_args()
    SITE[0] = args.site
    print(
        f"statusq bench {time.strftime('%Y-%m-%d')} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}), {args.messages} persistent 200-byte messages, "
        f"prefetch {args.prefetch}, client-individual acks, site {args.site!r}"
    )
    rows = []
    enqueued: list[tuple[str, list[tuple[float, float, float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for broker in args.brokers:
            rates = []
            for round_ in range(args.rounds):
                raw = raw_batches(broker, args.messages, args.batch)
                many, one = enqueue_rates(broker, args.messages, args.batch, work)
                rates.append((many, one, raw))
                print(
                    f"  {broker} round {round_ + 1}: (e) enqueue_many {many:,.0f}/s, (e') raw batches {raw:,.0f}/s, "
                    f"e/e' {many / raw:.2f}, one at a time {one:,.0f}/s",
                    flush=True,
                )
            enqueued.append((broker, rates))
            if args.enqueue_only:
                continue
            runs: list[dict[str, tuple[float, float]]] = []
            for round_ in range(args.rounds):
                # Rotate which runs first: a broker still busy with the previous fill's
                # journal, or warming up, must not always favour the same side.
                kinds = {
                    "a": lambda broker=broker: raw_round(broker, args),
                    "a2": lambda broker=broker: raw_round(broker, args, fast_frames=True),
                    "b": lambda broker=broker: statusq_consume(broker, args.messages, args.prefetch, work),
                    "f": lambda broker=broker: statusq_consume(
                        broker, args.messages, args.prefetch, work, fail_every=10
                    ),
                }
                order = list(kinds)[round_ % 4 :] + list(kinds)[: round_ % 4]
                run = {kind: kinds[kind]() for kind in order}
                runs.append(run)
                (a, cpu_a), (a2, cpu_a2), (b, cpu_b), (f, cpu_f) = run["a"], run["a2"], run["b"], run["f"]
                print(
                    f"  {broker} round {round_ + 1}: a {a:,.0f}/s ({cpu_a:.0f} us CPU/msg), "
                    f"a' {a2:,.0f}/s ({cpu_a2:.0f}), b {b:,.0f}/s ({cpu_b:.0f}), b/a {b / a:.2f}, b/a' {b / a2:.2f}, "
                    f"f {f:,.0f}/s ({cpu_f:.0f}), f/b {f / b:.2f}",
                    flush=True,
                )
            p50, p99, rss = latency(broker, args.samples, work)
            rows.append((broker, runs, p50, p99, rss))
    print()
    print(
        f"| broker | (e) enqueue_many, batches of {args.batch:,}, confirmed items/s (median) | per round "
        "| (e') raw stomp.py batches items/s (median) | e/e' per round | one at a time, receipt each, items/s "
        "(median) | e / one at a time |"
    )
    print("|---|---|---|---|---|---|---|")
    for broker, rates in enqueued:
        many, one, raw = (statistics.median(r[i] for r in rates) for i in range(3))
        per_round = ", ".join(f"{r[0]:,.0f}" for r in rates)
        ratios = ", ".join(f"{r[0] / r[2]:.2f}" for r in rates)
        print(f"| {broker} | {many:,.0f} | {per_round} | {raw:,.0f} | {ratios} | {one:,.0f} | {many / one:.1f} |")
    if args.enqueue_only:
        return 0
    print()
    # CPU per message (every thread of the consuming process) moves less than the rates on a
    # shared machine: a/b of it is the same ratio, seen from the other side.
    print(
        "| broker | (a) raw stomp.py msg/s | (a') + statusq's frame reader | (b) statusq msg/s "
        "| b/a (median) | b/a per round | b/a' (median) | b/a' per round | CPU us/msg a / a' / b "
        "| (f) 10% fail once msg/s | f/b (median) | f/b per round "
        "| latency p50 ms | p99 ms | idle worker RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for broker, runs, p50, p99, rss in rows:

        def med(kind: str, i: int, runs: list[dict[str, tuple[float, float]]] = runs) -> float:
            return statistics.median(run[kind][i] for run in runs)

        ba = [run["b"][0] / run["a"][0] for run in runs]
        ba2 = [run["b"][0] / run["a2"][0] for run in runs]
        fb = [run["f"][0] / run["b"][0] for run in runs]
        print(
            f"| {broker} | {med('a', 0):,.0f} | {med('a2', 0):,.0f} | {med('b', 0):,.0f} "
            f"| {statistics.median(ba):.2f} | {', '.join(f'{r:.2f}' for r in ba)} "
            f"| {statistics.median(ba2):.2f} | {', '.join(f'{r:.2f}' for r in ba2)} "
            f"| {med('a', 1):.0f} / {med('a2', 1):.0f} / {med('b', 1):.0f} "
            f"| {med('f', 0):,.0f} | {statistics.median(fb):.2f} | {', '.join(f'{r:.2f}' for r in fb)} "
            f"| {p50:.1f} | {p99:.1f} | {rss:.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
