"""The benchmark's handlers: a no-op that timestamps the first and last item, and a latency probe."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from statusq import PluginApi, QueueHandler, QueueItem

OUT = os.environ.get("BENCH_OUT", "/dev/null")
EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
#: Every FAIL_EVERY-th item (by the bench's numeric ids) returns False on its first attempt: the
#: retry path under load.  0: none fails.
FAIL_EVERY = int(os.environ.get("BENCH_FAIL_EVERY", "0"))


class Noop(QueueHandler):
    """Writes: items done, seconds and CPU seconds (all the worker's threads) from the first
    handler call to the last item done (a failed first attempt is not an item done)."""

    count = 0
    first = 0.0
    first_cpu = 0.0

    def handle(self, item: QueueItem) -> bool:
        if Noop.count == 0 and not Noop.first:
            Noop.first, Noop.first_cpu = time.perf_counter(), time.process_time()
        if FAIL_EVERY and item.attempt == 1 and int(item.id) % FAIL_EVERY == 0:
            return False
        Noop.count += 1
        if Noop.count == EXPECT:
            with open(OUT + ".tmp", "w") as fh:
                fh.write(f"{Noop.count} {time.perf_counter() - Noop.first} {time.process_time() - Noop.first_cpu}\n")
            os.replace(OUT + ".tmp", OUT)  # whole or not at all: the bench reads it once it exists
        return True


class Latency(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        lag = (datetime.now(UTC) - item.enqueued_at).total_seconds()
        with open(OUT, "a") as fh:
            fh.write(f"{lag}\n")
        return True


def register(api: PluginApi) -> None:
    api.register_handler("noop", Noop)
    api.register_handler("latency", Latency)
