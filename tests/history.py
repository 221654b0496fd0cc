"""What producers were told against what handlers did: the items lost and the items run twice.

A producer writes an item's id only after ``enqueue`` returned it (the promise: at least once);
handlers write a JSON line per run (``id`` among its fields, tests/conftest.py COUNTER_PLUGIN).
An id handled but never returned is no fault: its ``enqueue`` raised after the broker had the
item (a lost receipt), which at-least-once allows; it is counted apart as ``unconfirmed``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class History:
    returned: frozenset[str]
    handled: Counter[str]

    @property
    def lost(self) -> list[str]:
        """Ids whose ``enqueue`` returned and that no handler ran: what must never happen."""
        return sorted(self.returned - set(self.handled))

    @property
    def duplicates(self) -> dict[str, int]:
        """Ids handled more than once, each with its extra runs."""
        return {i: n - 1 for i, n in self.handled.items() if n > 1}

    @property
    def extra_runs(self) -> int:
        """Runs beyond the first, summed over every id."""
        return sum(self.duplicates.values())

    @property
    def unconfirmed(self) -> list[str]:
        """Ids handled whose ``enqueue`` never returned (it raised after the broker took them)."""
        return sorted(set(self.handled) - self.returned)

    def summary(self) -> str:
        return (
            f"{len(self.returned)} returned, {sum(self.handled.values())} runs, {len(self.lost)} lost, "
            f"{self.extra_runs} duplicate runs of {len(self.duplicates)} ids, {len(self.unconfirmed)} unconfirmed"
        )


def check(returned: Iterable[str], handled: Iterable[str]) -> History:
    """The history of ``returned`` ids (from producers) against ``handled`` ids (one per run)."""
    return History(frozenset(returned), Counter(handled))


def returned_ids(paths: Iterable[Path]) -> list[str]:
    """Producers' files: one id a line (a line cut short by a killed producer is dropped: its
    ``enqueue`` returned, but the promise was never written, so the test cannot hold it to it)."""
    ids: list[str] = []
    for path in paths:
        if path.exists():
            text = path.read_text()
            lines = text.splitlines()
            if lines and not text.endswith("\n"):
                lines.pop()
            ids.extend(line for line in lines if line)
    return ids


def handled_records(paths: Iterable[Path]) -> list[dict[str, object]]:
    """Handlers' JSON lines, from every file (one per host), in no particular order."""
    records: list[dict[str, object]] = []
    for path in paths:
        if path.exists():
            records.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    return records


def reruns_by_worker(records: Iterable[Mapping[str, Any]], key: str = "n") -> Counter[int]:
    """Per worker pid, its runs that ran again later: each such run's settlement never took
    effect (its ack lost with a connection or a broker), so the item came back.

    The bound statusq documents is per worker (its prefetch window and the item in hand), so a
    daemon of N workers may run up to N times that again in all: a test holding the total to one
    worker's bound fails on a machine with more cores, and one holding it to N times hides a
    worker that lost more than its window."""
    runs = sorted(records, key=lambda r: float(r["at"]))
    last = {r[key]: i for i, r in enumerate(runs)}
    return Counter(int(r["pid"]) for i, r in enumerate(runs) if last[r[key]] != i)


def assert_reruns_per_worker_within(records: Iterable[Mapping[str, Any]], bound: int) -> None:
    """Fail, naming every worker's count, if one worker's runs came back more than ``bound`` times."""
    reruns = reruns_by_worker(records)
    assert max(reruns.values(), default=0) <= bound, f"runs that came back, per worker pid: {dict(reruns)}"
