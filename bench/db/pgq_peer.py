"""PgQueuer's side of the database bench (runs in the bench venv: pgqueuer over asyncpg).

    python bench/db/pgq_peer.py install
    python bench/db/pgq_peer.py enqueue --first F --count N [--gap G]   one job per call
    python bench/db/pgq_peer.py enqueue-batch --first F --count N       lists of MAX_BATCH jobs
    python bench/db/pgq_peer.py work                                    until SIGTERM

$DB_BENCH_DSN names the database, $DB_BENCH_SCHEMA the schema PgQueuer's objects live in
(its search_path), $PEERS_OUT the tally file the handler records to (bench/peers/tally.py, the
same one write per item as statusq's handler).  The worker runs PgQueuer's defaults (batch_size
10, no concurrency limit), as a user who starts with its README would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "peers"))
import tally

ENTRYPOINT = "bench"
MAX_BATCH = 10_000  # as statusq's enqueue_many


async def connect() -> asyncpg.Connection:
    settings = {"search_path": os.environ["DB_BENCH_SCHEMA"]}
    return await asyncpg.connect(os.environ["DB_BENCH_DSN"], server_settings=settings)


def payload(i: int) -> bytes:
    return json.dumps({"i": i, "sent": time.time(), "sleep": 0.0}).encode()


async def install() -> None:
    conn = await connect()
    await Queries(AsyncpgDriver(conn)).install(create_schema=False)
    await conn.close()


async def enqueue(first: int, count: int, gap: float) -> float:
    conn = await connect()
    queries = Queries(AsyncpgDriver(conn))
    started = 0.0
    for i in range(first, first + count):
        await queries.enqueue(ENTRYPOINT, payload(i))
        if i == first:
            started = time.perf_counter()  # the first opens the way (statements prepared)
        if gap:
            await asyncio.sleep(gap)
    seconds = time.perf_counter() - started
    await conn.close()
    return (count - 1) / seconds


async def enqueue_batch(first: int, count: int) -> float:
    conn = await connect()
    queries = Queries(AsyncpgDriver(conn))
    await queries.enqueue([ENTRYPOINT], [payload(-1)], [0])  # warm-up, dequeued by nobody: purged after
    started = time.perf_counter()
    for start in range(first, first + count, MAX_BATCH):
        n = min(MAX_BATCH, first + count - start)
        await queries.enqueue([ENTRYPOINT] * n, [payload(i) for i in range(start, start + n)], [0] * n)
    seconds = time.perf_counter() - started
    await conn.close()
    return count / seconds


async def work() -> None:
    conn = await connect()
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint(ENTRYPOINT)
    async def handle(job: Job) -> None:
        started = time.time()
        data = json.loads(job.payload or b"{}")
        tally.record(data["i"], data["sent"], started)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    await pgq.run()
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["install", "enqueue", "enqueue-batch", "work"])
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--gap", type=float, default=0.0)
    args = parser.parse_args()
    if args.what == "install":
        asyncio.run(install())
    elif args.what == "enqueue":
        print(json.dumps({"rate": asyncio.run(enqueue(args.first, args.count, args.gap))}))
    elif args.what == "enqueue-batch":
        print(json.dumps({"rate": asyncio.run(enqueue_batch(args.first, args.count))}))
    else:
        asyncio.run(work())


if __name__ == "__main__":
    main()
