"""Running one row: clean queues, a producer, workers, the count of what they handled.

Every run starts and ends by deleting the system's queues on the broker, so nothing left by one
run (or by a crashed earlier bench) reaches the next.  Workers are started in sessions of their
own and stopped by SIGTERM to the process the bench started (each system's graceful stop),
then SIGKILL to that process group if they outlive the grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from systems import QUEUES, STATUSQ, Row, Systems, statusq_config
from tally import Tally

STOP_GRACE = 30.0  # seconds a worker gets to drain and exit on SIGTERM
STALL = 30.0  # seconds without a new item before a run is given up as stuck


class BenchFailure(Exception):
    """A run that lost items, or a system that would not start or stop: the bench exits non-zero."""


@dataclass
class Outcome:
    """What one row measured, and anything a reader should know about it."""

    row: Row
    value: float = 0.0  # items/s; for latency the p50 in ms
    value2: float = 0.0  # latency: p99 in ms
    items: int = 0
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # why the row was not measured at all


class Harness:
    def __init__(self, systems: Systems, work: Path, verbose: bool = False) -> None:
        self.systems = systems
        self.work = work
        self.verbose = verbose
        self._runs = 0

    # -- the broker ------------------------------------------------------------------------------

    def _rabbit(self, *args: str) -> str:
        argv = [self.systems.python("celery"), str(Path(__file__).with_name("rabbit.py")), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode:
            last = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise BenchFailure(f"rabbit.py {' '.join(args)} failed: {last[0]}")
        return done.stdout

    def reset(self, row: Row) -> None:
        self._rabbit("delete", *QUEUES[row.system])

    def ready_counts(self, row: Row) -> dict[str, int | None]:
        counts: dict[str, int | None] = json.loads(self._rabbit("count", *QUEUES[row.system]))
        return counts

    # -- one run's files and environment ---------------------------------------------------------

    def new_run(self, row: Row, prefetch: int | None, concurrency: int | None, confirm: bool) -> Run:
        self._runs += 1
        name = f"{self._runs:02d}-{row.system}"
        out = self.work / f"{name}.tally"
        env = {"PEERS_OUT": str(out), "PEERS_QUEUE": QUEUES[row.system][0], "PEERS_CONFIRM": "1" if confirm else "0"}
        config = None
        if row.system == STATUSQ:
            var = self.work / f"{name}-var"
            config = statusq_config(self.work / f"{name}.toml", prefetch, concurrency, confirm, var)
            env |= {"PEERS_CONFIG": str(config), "PEERS_TRANSPORT": row.transport}
        elif prefetch is not None:
            env |= {"PEERS_PREFETCH": str(prefetch), "dramatiq_queue_prefetch": str(prefetch)}
        return Run(self, row, name, out, env, config)


class Run:
    """One row's producer and workers, sharing one tally file and one environment."""

    def __init__(self, harness: Harness, row: Row, name: str, out: Path, env: dict[str, str], config: Path | None):
        self.harness, self.row, self.name, self.out, self.config = harness, row, name, out, config
        self.env = {**os.environ, **env}
        self.tally = Tally(str(out))
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def produce(self, first: int, count: int, sleep: float = 0.0, gap: float = 0.0) -> dict[str, float]:
        """Send ``count`` items from a producer process of the system's own client library."""
        argv = self.harness.systems.producer(self.row)
        argv += ["--first", str(first), "--count", str(count), "--sleep", str(sleep), "--gap", str(gap)]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode:
            raise BenchFailure(f"{self.row.label}: producer failed: {done.stderr.strip()[-1500:]}")
        result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def start(self) -> None:
        for k, command in enumerate(self.harness.systems.workers(self.row, self.config)):
            log = self.harness.work / f"{self.name}-worker{k}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    command.argv,
                    env={**self.env, **command.env},
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: the bench can end all it started
                )
            self.procs.append((proc, log))

    def wait_queued(self, n: int, timeout: float = 30.0) -> None:
        """Until the broker holds all ``n`` items just sent without confirmation: the workers
        start on a full queue, and an item lost by the producer is not blamed on the worker."""
        until = time.monotonic() + timeout
        queue = QUEUES[self.row.system][0]
        while (queued := self.harness.ready_counts(self.row)[queue]) != n:
            if time.monotonic() > until:
                raise BenchFailure(f"{self.row.label}: the producer sent {n} items, the queue holds {queued}")
            time.sleep(0.2)

    def wait_for(self, ids: range, deadline: float) -> None:
        """Until every id is recorded, a worker dies, or nothing new came for STALL seconds."""
        last_count, last_change = -1, time.monotonic()
        expected = len(ids)
        until = time.monotonic() + deadline
        while True:
            count = self.tally.read()
            now = time.monotonic()
            if count >= expected and not self.tally.missing(ids):
                return
            if count != last_count:
                last_count, last_change = count, now
            dead = [p for p, _ in self.procs if p.poll() is not None]
            if dead or now - last_change > STALL or now > until:
                why = f"worker exited {dead[0].returncode}" if dead else f"nothing new for {now - last_change:.0f}s"
                missing = self.tally.missing(ids)
                raise BenchFailure(
                    f"{self.row.label}: {why}; {len(missing)} of {expected} items never handled "
                    f"(ids {missing[:5]}...){self.log_tails()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                print(
                    f"    {self.row.label}: pid {proc.pid} outlived SIGTERM by {STOP_GRACE:.0f}s: SIGKILL", flush=True
                )
            # Children (prefork pools, statusq workers) left behind by a parent that died or hung.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_text(self) -> str:
        """Everything the run's workers wrote."""
        return "".join(log.read_text(errors="replace") for _, log in self.procs)

    def log_tails(self) -> str:
        tails = []
        for _, log in self.procs:
            text = log.read_text(errors="replace").strip()
            if text:
                tails.append(f"\n  --- {log.name} (last lines) ---\n  " + "\n  ".join(text.splitlines()[-15:]))
        return "".join(tails)

    def check(self, ids: range, outcome: Outcome) -> None:
        """After the workers stopped: every id handled (else the run fails), duplicates and
        messages left on the broker noted."""
        self.tally.read()
        missing = self.tally.missing(ids)
        if missing:
            raise BenchFailure(f"{self.row.label}: lost {len(missing)} of {len(ids)} items (first: {missing[:5]})")
        outcome.items = len(ids)
        if dupes := self.tally.duplicates():
            outcome.notes.append(f"{dupes} handled twice")
        left = {q: n for q, n in self.harness.ready_counts(self.row).items() if n}
        if left:
            outcome.notes.append(f"left on the broker: {left}")
