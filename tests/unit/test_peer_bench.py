"""The peer bench's own bookkeeping (bench/peers): counting what handlers recorded, and the
ratios of its tables.  The bench itself runs against the brokers by `make bench-peers`."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[2] / "bench" / "peers"
sys.path.insert(0, str(PEERS))

import report  # noqa: E402 -- bench/peers, put on the path above
import tally  # noqa: E402
from harness import Outcome  # noqa: E402
from systems import CELERY_THREADS, DRAMATIQ, STATUSQ, Row  # noqa: E402


def test_every_line_written_by_many_threads_is_read_back_once(tmp_path: Path) -> None:
    # Given 8 threads recording 250 items each into one file
    out = str(tmp_path / "run.tally")

    def work(base: int) -> None:
        for i in range(base, base + 250):
            tally.record(i, 1.0, 2.0, out)

    threads = [threading.Thread(target=work, args=(k * 250,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # When the driver reads the file (twice: the second read finds nothing new)
    reader = tally.Tally(out)
    assert reader.read() == 2000
    assert reader.read() == 2000
    # Then every id is there once
    assert reader.missing(range(2000)) == []
    assert reader.duplicates() == 0


def test_a_lost_item_and_a_duplicate_are_seen(tmp_path: Path) -> None:
    out = str(tmp_path / "run.tally")
    for i in (0, 1, 1, 3):
        tally.record(i, 1.0, 2.0, out)
    reader = tally.Tally(out)
    reader.read()
    assert reader.missing(range(4)) == [2]
    assert reader.duplicates() == 1


def test_a_line_read_half_written_is_completed_by_the_next_read(tmp_path: Path) -> None:
    path = tmp_path / "run.tally"
    path.write_bytes(b"0 1.0 2.0 3.0\n1 1.0 2.")
    reader = tally.Tally(str(path))
    assert reader.read() == 1
    with open(path, "ab") as fh:
        fh.write(b"0 3.0\n")
    assert reader.read() == 2
    assert reader.ids == [0, 1]


def test_rate_runs_from_the_first_start_to_the_last_end_and_lags_skip_warm_ups(tmp_path: Path) -> None:
    path = tmp_path / "run.tally"
    # id, sent, started, ended
    path.write_text("0 10.0 10.5 11.0\n1 11.0 11.002 11.5\n2 12.0 12.001 12.5\n")
    reader = tally.Tally(str(path))
    reader.read()
    assert reader.rate() == pytest.approx(3 / 2.0)
    assert reader.lags_ms(skip={0}) == pytest.approx([1.0, 2.0])


def test_ratios_are_against_the_best_peer_of_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("one", Outcome(Row(STATUSQ, "statusq 1"), value=300.0, items=10)),
        ("one", Outcome(Row(DRAMATIQ, "dramatiq 1"), value=100.0, items=10)),
        ("one", Outcome(Row(CELERY_THREADS, "celery 1"), value=150.0, items=10)),
        ("two", Outcome(Row(STATUSQ, "statusq 2"), value=300.0, items=10)),
        ("two", Outcome(Row(DRAMATIQ, "dramatiq 2"), value=600.0, items=10)),
        ("async", Outcome(Row(STATUSQ, "statusq async"), value=1200.0, items=10)),
        ("two", Outcome(Row(CELERY_THREADS, "celery 2"), skipped="FAILED: lost 1 of 10 items")),
    ]
    report.rates("t", rows)
    lines = {line.split(" | ")[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    assert "**2.00**" in lines["statusq 1"]  # best peer of its group: celery 150
    assert "**0.50**" in lines["statusq 2"]  # dramatiq 600; the failed row counts for nothing
    assert "**2.00**" in lines["statusq async"]  # no peer in its group: the best of the table, 600
    assert "FAILED: lost 1 of 10 items" in lines["celery 2"]


def test_latency_ratios_are_best_peer_over_the_row(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ("", Outcome(Row(STATUSQ, "statusq"), value=1.0, value2=4.0, items=12)),
        ("", Outcome(Row(DRAMATIQ, "dramatiq"), value=2.0, value2=2.0, items=12)),
    ]
    report.latencies("t", rows)
    statusq = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| statusq"))
    assert "| 2.00 | 0.50 |" in statusq
