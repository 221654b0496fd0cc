#!/usr/bin/env python3
"""statusq's database backend (SQLite, PostgreSQL) beside PgQueuer, on one PostgreSQL server, in one run.

Run by `make bench` (and alone by `make bench-db`) with the product's venv; PgQueuer (asyncpg)
comes from the bench venv (.bench-venv, bench/peers/requirements.txt).  Everything lives in the
database ``statusq_bench`` (made if missing), statusq's tables in schema ``sq``, PgQueuer's in
``pgq``, both dropped and made anew before every row: no test database is touched.  Rows:

  consume   N no-op items queued first (batch enqueue), then the workers started; items/s from
            the first handler start to the last handler end (bench/peers/tally.py), with 1 and 2
            worker processes (statusq --workers k; k PgQueuer processes)
  enqueue   one producer, one item per call, each committed before the call returns
  batch     one producer, enqueue_many / PgQueuer's list enqueue, 10,000 items per call
  latency   enqueue -> handler start on an idle worker, items sent one at a time 10 ms apart

Every handled item is recorded and counted against what was sent; a row that lost an item is
marked FAILED and the bench exits 1.  Figures on a shared 2-core machine move by +-30% between
runs: read the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # statusq from this checkout
import tally  # bench/peers: the same one-write-per-item record for every system

import statusq
from statusq import Item

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVER = "postgresql://127.0.0.1:5432"
DATABASE = "statusq_bench"
DSN = f"{SERVER}/{DATABASE}"
#: Sites the batch-enqueued items are spread over, in turn (``--sites``): a claim's cost with many.
SITES = 1
PLUGIN = HERE / "statusq_plugin"  # "peer_work" alone: records, returns True
STALL = 30.0


class BenchFailure(Exception):
    pass


@dataclass
class Outcome:
    value: float = 0.0
    value2: float = 0.0
    items: int = 0
    notes: list[str] = field(default_factory=list)
    failed: str = ""


def psql(sql: str, database: str | None = None) -> None:
    with psycopg.connect(f"{SERVER}/{database or DATABASE}", autocommit=True) as conn:
        conn.execute(sql)


def prepare_database() -> None:
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            conn.execute(f"CREATE DATABASE {DATABASE}")


def fresh_schema(name: str) -> None:
    psql(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")


class System:
    """One system's workers and producers for a run; ``work`` is the run's folder."""

    label = ""

    def __init__(self, work: Path, venv: Path) -> None:
        self.work, self.venv = work, venv
        self.out = work / "tally"
        self.env = {**os.environ, "PEERS_OUT": str(self.out), "PYTHONPATH": f"{ROOT}:{ROOT / 'bench' / 'peers'}"}

    def reset(self) -> None:
        raise NotImplementedError

    def workers(self, k: int) -> list[list[str]]:
        raise NotImplementedError

    def enqueue(self, first: int, count: int, gap: float = 0.0) -> float:
        raise NotImplementedError

    def enqueue_batch(self, first: int, count: int) -> float:
        raise NotImplementedError


class Statusq(System):
    def __init__(self, work: Path, venv: Path, url: str, label: str) -> None:
        super().__init__(work, venv)
        self.url, self.label = url, label
        self.config = work / "statusq.toml"
        lines = [
            f'var_dir = "{work / "var"}"',
            "[queue]",
            'subsystem = "db"',
            f'db_url = "{url}"',
            "[metrics]",
            "enabled = false",  # no port to bind beside the tests running on this machine
            "[plugins]",
            f'paths = ["{PLUGIN}"]',
            "[log]",
            'level = "WARNING"',
        ]
        self.config.write_text("\n".join(lines) + "\n")

    def reset(self) -> None:
        if self.url.startswith("sqlite"):
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        else:
            fresh_schema("sq")

    def workers(self, k: int) -> list[list[str]]:
        argv = [sys.executable, "-m", "statusq.cli.main", "--config", str(self.config), "daemon"]
        return [[*argv, "--workers", str(k)]]

    def enqueue(self, first: int, count: int, gap: float = 0.0) -> float:
        with statusq.connect(self.config) as qm:

            def send(i: int, sent: float, sleep: float) -> None:
                qm.enqueue({"i": i, "sent": sent, "sleep": sleep}, "peer_work")

            return (count - 1) / tally.produce(send, first, count, 0.0, gap)

    def enqueue_batch(self, first: int, count: int) -> float:
        with statusq.connect(self.config) as qm:
            qm.enqueue({"i": -1, "sent": 0, "sleep": 0}, "peer_work")  # opens the connection
            started = time.perf_counter()
            for start in range(first, first + count, 10_000):
                n = min(10_000, first + count - start)
                now = time.time()
                qm.enqueue_many(
                    Item({"i": i, "sent": now, "sleep": 0.0}, "peer_work", site=f"site{i % SITES}.example")
                    for i in range(start, start + n)
                )
            return count / (time.perf_counter() - started)


class PgQueuer(System):
    label = "PgQueuer 1.6 (asyncpg)"

    def _peer(self, *args: str) -> list[str]:
        return [str(self.venv / "bin" / "python"), str(HERE / "pgq_peer.py"), *args]

    def __init__(self, work: Path, venv: Path) -> None:
        super().__init__(work, venv)
        self.env |= {"DB_BENCH_DSN": DSN, "DB_BENCH_SCHEMA": "pgq"}

    def reset(self) -> None:
        fresh_schema("pgq")
        self._run("install")

    def _run(self, *args: str) -> dict[str, float]:
        done = subprocess.run(self._peer(*args), env=self.env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode:
            raise BenchFailure(f"pgq_peer.py {' '.join(args)}: {done.stderr.strip()[-1500:]}")
        lines = done.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def workers(self, k: int) -> list[list[str]]:
        return [self._peer("work") for _ in range(k)]

    def enqueue(self, first: int, count: int, gap: float = 0.0) -> float:
        return self._run("enqueue", "--first", str(first), "--count", str(count), "--gap", str(gap))["rate"]

    def enqueue_batch(self, first: int, count: int) -> float:
        return self._run("enqueue-batch", "--first", str(first), "--count", str(count))["rate"]


class Workers:
    """A system's worker processes, each in a session of its own, stopped by SIGTERM."""

    def __init__(self, system: System, k: int) -> None:
        self.system = system
        self.procs: list[subprocess.Popen[bytes]] = []
        for n, argv in enumerate(system.workers(k)):
            with open(system.work / f"worker{n}.log", "ab") as log:
                self.procs.append(
                    subprocess.Popen(argv, env=system.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                )

    def wait_for(self, seen: tally.Tally, ids: range) -> None:
        last, since = -1, time.monotonic()
        while True:
            count = seen.read()
            if count >= len(ids) and not seen.missing(ids):
                return
            if count != last:
                last, since = count, time.monotonic()
            dead = [p.returncode for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() - since > STALL:
                why = f"worker exited {dead[0]}" if dead else f"nothing new for {STALL:.0f}s"
                raise BenchFailure(f"{why}: {len(seen.missing(ids))} of {len(ids)} never handled{self.tails()}")
            time.sleep(0.05)

    def tails(self) -> str:
        logs = sorted(self.system.work.glob("worker*.log"))
        return "".join(f"\n  --- {p.name}\n  " + "\n  ".join(p.read_text().splitlines()[-10:]) for p in logs)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"    pid {proc.pid} outlived SIGTERM by 30s: SIGKILL", flush=True)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def fresh_tally(system: System) -> tally.Tally:
    system.out.unlink(missing_ok=True)
    return tally.Tally(str(system.out))


def consume(system: System, n: int, k: int) -> Outcome:
    """Fill the queue with ``n`` items, then start ``k`` workers and time them through it."""
    system.reset()
    seen = fresh_tally(system)
    system.enqueue_batch(0, n)
    workers = Workers(system, k)
    try:
        workers.wait_for(seen, range(n))
    finally:
        workers.stop()
    seen.read()
    outcome = Outcome(seen.rate(), items=n)
    if dupes := seen.duplicates():
        outcome.notes.append(f"{dupes} handled twice")
    return outcome


def enqueue(system: System, n: int) -> Outcome:
    system.reset()
    return Outcome(system.enqueue(0, n + 1), items=n + 1)


def enqueue_batch(system: System, n: int) -> Outcome:
    system.reset()
    return Outcome(system.enqueue_batch(0, n), items=n)


def latency(system: System, samples: int) -> Outcome:
    """Enqueue -> handler start on an idle worker.  Item 0 warms the worker up (and is waited
    for); item 1 is the producer's first send, which opens its connection: both left out."""
    system.reset()
    seen = fresh_tally(system)
    workers = Workers(system, 1)
    try:
        system.enqueue(0, 1)
        workers.wait_for(seen, range(1))
        system.enqueue(1, samples + 1, gap=0.01)
        workers.wait_for(seen, range(samples + 2))
    finally:
        workers.stop()
    seen.read()
    lags = seen.lags_ms(skip={0, 1})
    return Outcome(statistics.median(lags), lags[max(0, round(len(lags) * 0.99) - 1)], items=samples)


Row = tuple[str, str, Callable[[], Outcome]]


def plan(systems: dict[str, System], sizes: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for k in (1, 2):
        for key in ("pg", "pgq", "sqlite"):
            rows.append(
                (
                    f"consume, {k} worker process{'es' if k > 1 else ''}",
                    key,
                    lambda s=systems[key], k=k: consume(s, sizes.consume, k),
                )
            )
    for key in ("pg", "pgq", "sqlite"):
        rows.append(("enqueue, one item per call", key, lambda s=systems[key]: enqueue(s, sizes.enqueue)))
    for key in ("pg", "pgq", "sqlite"):
        rows.append(("enqueue, batched (10,000 per call)", key, lambda s=systems[key]: enqueue_batch(s, sizes.batch)))
    for key in ("pg", "pgq", "sqlite"):
        rows.append(("enqueue -> start, idle worker (ms)", key, lambda s=systems[key]: latency(s, sizes.samples)))
    return rows


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def server_version() -> str:
    with psycopg.connect(DSN) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"


def table(results: list[tuple[str, str, Outcome]], systems: dict[str, System]) -> None:
    machine = f"{os.cpu_count()} cores {cpu_model()}, PostgreSQL {server_version()}"
    print(f"\n### Database backend beside PgQueuer ({time.strftime('%Y-%m-%d')}, {machine})\n")
    print(
        "| scenario | " + " | ".join(systems[k].label for k in ("pg", "pgq", "sqlite")) + " | statusq PG / PgQueuer |"
    )
    print("|---|---|---|---|---|")
    by = {(scenario, key): o for scenario, key, o in results}
    for scenario in dict.fromkeys(s for s, _, _ in results):
        cells = []
        for key in ("pg", "pgq", "sqlite"):
            o = by.get((scenario, key))
            if o is None or o.failed:
                cells.append("FAILED" if o else "–")
            elif scenario.endswith("(ms)"):
                cells.append(f"p50 {o.value:.1f} / p99 {o.value2:.1f}")
            else:
                cells.append(f"{o.value:,.0f}/s" + (f" ({'; '.join(o.notes)})" if o.notes else ""))
        pg, pgq = by.get((scenario, "pg")), by.get((scenario, "pgq"))
        ratio = "–"
        if pg and pgq and not pg.failed and not pgq.failed and pg.value and pgq.value:
            ratio = f"{pgq.value / pg.value:.2f}" if scenario.endswith("(ms)") else f"{pg.value / pgq.value:.2f}"
        print(f"| {scenario} | " + " | ".join(cells) + f" | {ratio} |")


def main() -> int:
    global SITES, DATABASE, DSN  # one run's settings, read by the systems
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consume", type=int, default=10_000)
    parser.add_argument("--enqueue", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench-venv")
    parser.add_argument("--only", default="", help="scenarios whose name contains this")
    parser.add_argument("--sites", type=int, default=1, help="batch-enqueued items spread over this many sites")
    parser.add_argument("--database", default=DATABASE, help="the bench's own database (made if missing)")
    parser.add_argument("--no-peer", action="store_true", help="statusq alone: no PgQueuer rows, no bench venv")
    args = parser.parse_args()
    SITES, DATABASE, DSN = args.sites, args.database, f"{SERVER}/{args.database}"
    if not args.no_peer and not (args.venv / "bin" / "python").exists():
        print(f"no bench venv at {args.venv}: make .bench-venv/.installed", file=sys.stderr)
        return 2
    prepare_database()
    with tempfile.TemporaryDirectory(prefix="statusq-db-bench-") as tmp:
        work = Path(tmp)
        systems: dict[str, System] = {}
        for key, make in {
            "pg": lambda d: Statusq(d, args.venv, f"{DSN}?options=-csearch_path%3Dsq", "statusq PostgreSQL"),
            "pgq": lambda d: PgQueuer(d, args.venv),
            "sqlite": lambda d: Statusq(d, args.venv, f"sqlite:///{d / 'q.sqlite'}", "statusq SQLite"),
        }.items():
            (work / key).mkdir()
            systems[key] = make(work / key)
        results: list[tuple[str, str, Outcome]] = []
        failures = 0
        for scenario, key, how in plan(systems, args):
            if args.only not in scenario or (args.no_peer and key == "pgq"):
                continue
            started = time.monotonic()
            try:
                outcome = how()
            except BenchFailure as exc:
                failures += 1
                outcome = Outcome(failed=str(exc))
                print(f"  FAILED {scenario} / {systems[key].label}: {exc}", file=sys.stderr, flush=True)
            else:
                extra = f", p99 {outcome.value2:.1f}" if outcome.value2 else ""
                took = time.monotonic() - started
                print(f"  {scenario} / {systems[key].label}: {outcome.value:,.1f}{extra} ({took:.0f}s)", flush=True)
            results.append((scenario, key, outcome))
        fresh_schema("sq")
        if not args.no_peer:
            fresh_schema("pgq")
        table(results, systems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
