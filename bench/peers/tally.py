"""What every system's handler writes, how the driver reads it back, and the producers' loop.

Standard library only: imported by statusq's bench plugin (the product's venv) and by the Celery
and Dramatiq modules (the bench venv).  Every handled item appends one line to the file named by
$PEERS_OUT with a single O_APPEND write, which is atomic for a line this short whatever the
threads and processes writing: the driver counts items and duplicates from these lines, so the
same cost (one system call) is paid by every system.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: (pid, path) -> descriptor: a prefork child must not share its parent's (it would, harmlessly,
#: but the cache keyed by pid also opens the file lazily, after the fork).
_fds: dict[tuple[int, str], int] = {}
_lock = threading.Lock()


def record(item: int, sent: float, started: float, path: str | None = None) -> None:
    """One line per item handled: id, enqueue stamp, handler start and end (time.time())."""
    path = path or os.environ["PEERS_OUT"]
    key = (os.getpid(), path)
    fd = _fds.get(key)
    if fd is None:
        with _lock:
            fd = _fds.get(key)
            if fd is None:
                fd = _fds[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{item} {sent:.6f} {started:.6f} {time.time():.6f}\n".encode())


@dataclass
class Tally:
    """The lines of one run's file, read as they grow."""

    path: str
    offset: int = 0
    ids: list[int] = field(default_factory=list)
    sent: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    _partial: bytes = b""

    def read(self) -> int:
        """Take in what was written since the last call; return how many lines there are."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            item, sent, started, ended = line.split()
            self.ids.append(int(item))
            self.sent.append(float(sent))
            self.started.append(float(started))
            self.ended.append(float(ended))
        return len(self.ids)

    def missing(self, expected: range) -> list[int]:
        return sorted(set(expected) - set(self.ids))

    def duplicates(self) -> int:
        return len(self.ids) - len(set(self.ids))

    def rate(self) -> float:
        """Items per second from the first handler start to the last handler end: workers'
        start-up and the fill before it are left out, for every system alike."""
        return len(self.ids) / (max(self.ended) - min(self.started))

    def lags_ms(self, skip: set[int]) -> list[float]:
        """Enqueue -> handler start, in ms, of every item but those in ``skip``."""
        return sorted(
            (s - q) * 1000 for i, q, s in zip(self.ids, self.sent, self.started, strict=True) if i not in skip
        )


def produce(send: Callable[[int, float, float], None], first: int, count: int, sleep: float, gap: float) -> float:
    """Send ids first .. first+count-1 one at a time; return the seconds from the end of the
    first send (which opens the connection) to the end of the last."""
    started = 0.0
    for i in range(first, first + count):
        send(i, time.time(), sleep)
        if i == first:
            started = time.perf_counter()
        if gap:
            time.sleep(gap)
    return time.perf_counter() - started


def producer_main(send: Callable[[int, float, float], None], close: Callable[[], None] = lambda: None) -> None:
    """The command line every system's module has: send, then print the timing as JSON."""
    parser = argparse.ArgumentParser(description="send bench items one at a time")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds the handler sleeps")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between two sends")
    args = parser.parse_args()
    seconds = produce(send, args.first, args.count, args.sleep, args.gap)
    close()
    timed = args.count - 1
    print(
        json.dumps({"sent": args.count, "timed": timed, "seconds": seconds, "rate": timed / seconds if seconds else 0})
    )
