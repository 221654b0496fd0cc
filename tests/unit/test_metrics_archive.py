"""Folding dead workers' metric files: the scrape must read the same totals before and after."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from statusq.metrics.archive import Archive
from statusq.metrics.server import daemon_registry


class _Nothing:
    def collect(self) -> list[object]:
        return []


def _write(folder: Path, prefix: str, pid: int, series: dict[tuple[str, str, tuple[str, ...]], float]) -> None:
    """A worker's file as prometheus-client writes it."""
    values = MmapedDict(str(folder / f"{prefix}_{pid}.db"))  # type: ignore[no-untyped-call]
    for (metric, name, labels), value in series.items():
        key = mmap_key(metric, name, ["site"] if labels else [], list(labels), "help")
        values.write_value(key, value, 0.0)  # type: ignore[no-untyped-call]
    values.close()  # type: ignore[no-untyped-call]


def _worker(folder: Path, pid: int, handled: float, seconds: float, last: float) -> None:
    _write(folder, "counter", pid, {("statusq_items", "statusq_items_total", ("a.example",)): handled})
    _write(
        folder,
        "histogram",
        pid,
        {
            ("statusq_handling_seconds", "statusq_handling_seconds_bucket", ()): 0.0,
            ("statusq_handling_seconds", "statusq_handling_seconds_sum", ()): seconds,
        },
    )
    _write(folder, "gauge_max", pid, {("statusq_last", "statusq_last", ()): last})


def _scrape(registry: CollectorRegistry) -> list[str]:
    return sorted(line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#"))


def test_folding_keeps_every_total_and_leaves_one_file_per_kind(tmp_path: Path) -> None:
    archive = Archive(tmp_path)
    registry = daemon_registry(tmp_path, _Nothing(), archive)  # type: ignore[arg-type]
    _worker(tmp_path, 101, handled=5, seconds=1.5, last=1000.0)
    _worker(tmp_path, 102, handled=7, seconds=2.0, last=900.0)
    _worker(tmp_path, 103, handled=1, seconds=0.25, last=950.0)
    before = _scrape(registry)
    assert 'statusq_items_total{site="a.example"} 13.0' in before

    assert archive.fold(101) == 4
    assert archive.fold(102) == 4
    assert archive.fold(999) == 0  # a worker that never counted anything

    assert _scrape(registry) == before
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "counter_103.db", "counter_archive.db", "gauge_max_103.db", "gauge_max_archive.db",
        "histogram_103.db", "histogram_archive.db",
    ]  # fmt: skip

    # A later worker reusing a folded worker's pid starts a file of its own, added like any other
    _worker(tmp_path, 101, handled=2, seconds=0.5, last=1100.0)
    assert 'statusq_items_total{site="a.example"} 15.0' in _scrape(registry)
    archive.fold(101)
    archive.fold(103)
    after = _scrape(registry)
    assert 'statusq_items_total{site="a.example"} 15.0' in after
    assert "statusq_handling_seconds_sum 4.25" in after
    assert "statusq_last 1100.0" in after  # max, not sum
