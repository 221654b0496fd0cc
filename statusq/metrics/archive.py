"""Dead workers' metric files folded into one archive per kind, so they do not pile up.

prometheus-client's multiprocess mode keeps one file per worker pid and per metric kind, and a
counter's file must outlive its worker: deleting it would make the daemon's counter go down, which
Prometheus reads as a reset.  A daemon that recycles workers (memory limit, ``reload``, crashes)
would so gather files without end, and every scrape reads them all.  When a worker is reaped, its
counters and histograms are added into ``counter_archive.db`` / ``histogram_archive.db`` and its
``max`` gauges into ``gauge_max_archive.db``, in the same format, and its files deleted.

The fold and the scrape must never overlap: a scrape between "added to the archive" and "file
deleted" would count the worker twice, and one that globbed the file before it was deleted
would fail on reading it.  :class:`Archive` holds one lock for both, and :class:`LockedCollector`
takes it around each collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.registry import Collector

#: File prefix -> how two values of the same series combine.
_KINDS = {"counter": "sum", "histogram": "sum", "gauge_max": "max"}
ARCHIVE = "archive"


class Archive:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()

    def fold(self, pid: int) -> int:
        """Move what worker ``pid`` counted into the archive files; how many series were moved."""
        moved = 0
        with self.lock:
            for prefix, how in _KINDS.items():
                dead = self.folder / f"{prefix}_{pid}.db"
                if not dead.exists():
                    continue
                moved += self._fold_file(dead, self.folder / f"{prefix}_{ARCHIVE}.db", how)
                dead.unlink()
        return moved

    @staticmethod
    def _fold_file(dead: Path, archive_path: Path, how: str) -> int:
        values = MmapedDict.read_all_values_from_file(str(dead))  # type: ignore[no-untyped-call]
        archive = MmapedDict(str(archive_path))  # type: ignore[no-untyped-call]
        moved = 0
        try:
            existing = {key: (value, ts) for key, value, ts in archive.read_all_values()}  # type: ignore[no-untyped-call]
            for key, value, timestamp, _ in values:
                merged = (value, timestamp)
                if key in existing:
                    old, old_timestamp = existing[key]
                    merged = (old + value if how == "sum" else max(old, value), max(timestamp, old_timestamp))
                archive.write_value(key, *merged)  # type: ignore[no-untyped-call]
                moved += 1
        finally:
            archive.close()  # type: ignore[no-untyped-call]
        return moved


class LockedCollector(Collector):
    """A collector that reads only while no fold is under way (see the module's docstring)."""

    def __init__(self, inner: Collector, lock: threading.Lock) -> None:
        self.inner = inner
        self.lock = lock

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            return list(self.inner.collect())
