#!/usr/bin/env python3
"""Per-item enqueue on PostgreSQL, statusq checkouts beside PgQueuer, alternating in short blocks.

    python bench/db/enqueue_pairs.py [--statusq NAME=CHECKOUT ...] [--rounds 30] [--block 200]

`make bench-db`'s per-item row times each system for a few seconds, a minute apart: on a shared
machine the load moves between the two and the ratio swings either way (0.76-1.83 in one day).
Here every system is one producer process kept open (statusq: ``qm.enqueue``, one item per call,
each committed; PgQueuer: ``Queries.enqueue``, as bench/db/pgq_peer.py), and each round gives
every one a block of ``--block`` items in turn, the order rotating: what the load does to one
it does to the others within seconds.  Printed: each system's median items/s over the rounds,
its median CPU µs per item (its own process), and the median of the per-round ratios to
PgQueuer.  ``--statusq`` names checkouts to compare (e.g. the code before a change,
``git worktree add /tmp/before HEAD~1``); default: this one.  Database ``statusq_bench``
(``--database``), a schema per system, dropped and made anew.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SERVER = "postgresql://127.0.0.1:5432"

#: The producer each process runs: reads a count per line, enqueues that many, prints [wall, cpu].
STATUSQ = """
import json, sys, time
import statusq
with statusq.connect(sys.argv[1]) as qm:
    qm.enqueue({"i": -1}, "peer_work")  # opens the connection
    print("ready", flush=True)
    for line in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(int(line)):
            qm.enqueue({"i": i, "sent": time.time(), "sleep": 0.0}, "peer_work")
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)
"""
PGQUEUER = """
import asyncio, json, sys, time
import pgq_peer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

async def main():
    conn = await pgq_peer.connect()
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue(pgq_peer.ENTRYPOINT, pgq_peer.payload(-1))  # statements prepared
    print("ready", flush=True)
    for line in sys.stdin:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(int(line)):
            await queries.enqueue(pgq_peer.ENTRYPOINT, pgq_peer.payload(i))
        print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]), flush=True)
    await conn.close()

asyncio.run(main())
"""


def fresh_schema(dsn: str, name: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}")


def start(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``cwd``: not a checkout (``python -c`` puts the working directory first on sys.path)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{argv}: did not start")
    return proc


def statusq_producer(dsn: str, work: Path, name: str, checkout: Path) -> subprocess.Popen[str]:
    schema = f"pairs_{name}"
    fresh_schema(dsn, schema)
    config = work / f"{name}.toml"
    config.write_text(
        f'var_dir = "{work / name}"\n[queue]\nsubsystem = "db"\n'
        f'db_url = "{dsn}?options=-csearch_path%3D{schema}"\n[metrics]\nenabled = false\n[log]\nlevel = "WARNING"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    return start([sys.executable, "-c", STATUSQ, str(config)], env, work)


def pgqueuer_producer(dsn: str, work: Path, venv: Path) -> subprocess.Popen[str]:
    fresh_schema(dsn, "pairs_PgQueuer")
    env = {**os.environ, "DB_BENCH_DSN": dsn, "DB_BENCH_SCHEMA": "pairs_PgQueuer", "PYTHONPATH": str(HERE)}
    python = str(venv / "bin" / "python")
    subprocess.run([python, str(HERE / "pgq_peer.py"), "install"], env=env, check=True)
    return start([python, "-c", PGQUEUER], env, work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statusq", action="append", default=[], metavar="NAME=CHECKOUT")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--venv", type=Path, default=ROOT / ".bench-venv")
    parser.add_argument("--database", default="statusq_bench")
    args = parser.parse_args()
    dsn = f"{SERVER}/{args.database}"
    with psycopg.connect(f"{SERVER}/test", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (args.database,)).fetchone():
            conn.execute(f"CREATE DATABASE {args.database}")
    checkouts = dict(spec.split("=", 1) for spec in args.statusq) or {"statusq": str(ROOT)}
    work = Path(tempfile.mkdtemp(prefix="statusq-enqueue-pairs-"))
    procs = {name: statusq_producer(dsn, work, name, Path(path)) for name, path in checkouts.items()}
    procs["PgQueuer"] = pgqueuer_producer(dsn, work, args.venv)
    names = list(procs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    loads = []
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            proc = procs[name]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{args.block}\n")
            proc.stdin.flush()
            wall, cpu = json.loads(proc.stdout.readline())
            rates[name].append(args.block / wall)
            cpus[name].append(cpu / args.block * 1e6)
        loads.append(os.getloadavg()[0])
    for proc in procs.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(30)
    for name in names:
        fresh_schema(dsn, f"pairs_{name}")
    shutil.rmtree(work)
    print(f"{args.rounds} rounds of {args.block} items each; load average {min(loads):.1f}-{max(loads):.1f}")
    print("| system | items/s (median) | CPU µs/item (median) | / PgQueuer (median of rounds) |")
    print("|---|---|---|---|")
    for name in names:
        ratio = statistics.median(a / b for a, b in zip(rates[name], rates["PgQueuer"], strict=True))
        print(f"| {name} | {statistics.median(rates[name]):,.0f} | {statistics.median(cpus[name]):.0f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
