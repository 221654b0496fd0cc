"""The producer's own cost of ``enqueue_many``: CPU microseconds per item of this process (all
its threads: ``time.process_time``) and items/s, per backend, in one process.

The machine this project measures on is shared and busy, so a wall-clock rate moves by a third
between runs; the producer's CPU per item does not, and it is the part statusq can cut (the
server's or broker's own work is not in it).  ``--prepare-only`` times only the checks and
encoding (``statusq.produce.prepare_batch``), no backend.  Run it against two trees to compare
them: ``PYTHONPATH=/path/to/tree python bench/enqueue_cpu.py``.

Backends: ``sqlite`` (a file in a temporary directory), ``postgres`` (schema ``sq_enqcpu`` of
database ``test`` on 127.0.0.1:5432), ``activemq`` (61613), ``rabbitmq`` (61614), each on
queues of its own, emptied afterwards where the backend allows.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import statusq
from statusq import Item
from statusq.produce import prepare_batch

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
PORTS = {"activemq": 61613, "rabbitmq": 61614}


def items(n: int, first: int) -> list[Item]:
    """What the benches enqueue: a small JSON payload, one transport, the default site."""
    now = time.time()
    return [Item({"i": i, "sent": now, "sleep": 0.0}, "noop") for i in range(first, first + n)]


def config(work: Path, backend: str, basename: str) -> Path:
    lines = [f'var_dir = "{work / "var"}"', "[metrics]", "enabled = false", "[log]", 'level = "WARNING"', "[queue]"]
    if backend == "sqlite":
        lines += ['subsystem = "db"', f'db_url = "sqlite:///{work / "q.db"}"']
    elif backend == "postgres":
        lines += ['subsystem = "db"', f'db_url = "{PG_URL}?options=-csearch_path%3Dsq_enqcpu"']
    else:
        lines += [
            'subsystem = "stomp"',
            f'db_url = "sqlite:///{work / "keys.db"}"',
            "[queue.stomp]",
            f'servers = ["127.0.0.1:{PORTS[backend]}"]',
            'username = "guest"',
            'password = "guest"',
            f'basename = "{basename}"',
        ]
    path = work / f"{backend}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def measure(run: Callable[[list[Item]], Any], n: int, batch: int) -> tuple[float, float]:
    """(CPU µs per item, items/s) over ``n`` items in calls of ``batch``, items built beforehand."""
    batches = [items(min(batch, n - first), first) for first in range(0, n, batch)]
    started, started_cpu = time.perf_counter(), time.process_time()
    for chunk in batches:
        run(chunk)
    wall, cpu = time.perf_counter() - started, time.process_time() - started_cpu
    return cpu / n * 1e6, n / wall


def backend_run(backend: str, work: Path, n: int, batch: int, rounds: int) -> list[tuple[float, float]]:
    if backend == "postgres":
        import sqlalchemy  # noqa: PLC0415 - only for this backend

        engine = sqlalchemy.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS sq_enqcpu CASCADE; CREATE SCHEMA sq_enqcpu"))
    basename = f"/queue/enqcpu{uuid.uuid4().hex[:8]}/"
    qm = statusq.connect(config(work, backend, basename))
    try:
        qm.enqueue({"warm": True}, "noop")  # opens the connection, makes the tables
        results = [measure(qm.enqueue_many, n, batch) for _ in range(rounds)]
        if backend in PORTS:  # the broker left as it was: every item consumed
            # bench/run.py's bare consumer (imported late: it puts its own checkout first on sys.path)
            import run  # noqa: PLC0415

            destination = run.physical(backend, basename + "main")
            run.raw_consume(PORTS[backend], destination, n * rounds + 1, 1000, True, run.statusq_queue_args(backend))
        return results
    finally:
        qm.close()
        if backend == "postgres":
            with engine.begin() as conn:
                conn.execute(sqlalchemy.text("DROP SCHEMA IF EXISTS sq_enqcpu CASCADE"))
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=10_000, help="items per enqueue_many")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres", *PORTS])
    parser.add_argument("--prepare-only", action="store_true", help="only the checks and encoding, no backend")
    args = parser.parse_args()
    if args.prepare_only:
        results = [
            measure(lambda chunk: prepare_batch(chunk, "default", time.time(), 10_000), args.items, args.batch)
            for _ in range(args.rounds)
        ]
        report("prepare_batch", results)
        return 0
    with tempfile.TemporaryDirectory(prefix="enqcpu-") as tmp:
        for backend in args.backends:
            report(backend, backend_run(backend, Path(tmp), args.items, args.batch, args.rounds))
    return 0


def report(label: str, results: list[tuple[float, float]]) -> None:
    cpu = statistics.median(r[0] for r in results)
    rate = statistics.median(r[1] for r in results)
    rounds = ", ".join(f"{c:.1f} µs {r:,.0f}/s" for c, r in results)
    print(f"{label}: median {cpu:.1f} CPU µs/item, {rate:,.0f} items/s  (rounds: {rounds})", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
