"""tests/history.py: the checker the fault tests judge a run by must itself be right."""

from __future__ import annotations

import json
from pathlib import Path

from tests.history import check, handled_records, reruns_by_worker, returned_ids


def test_each_returned_id_handled_once_is_a_clean_history() -> None:
    history = check(["a", "b", "c"], ["c", "a", "b"])
    assert history.lost == [] and history.duplicates == {} and history.unconfirmed == []


def test_a_returned_id_never_handled_is_lost() -> None:
    assert check(["a", "b", "c"], ["a"]).lost == ["b", "c"]


def test_duplicates_are_counted_by_their_extra_runs() -> None:
    history = check(["a", "b"], ["a", "a", "a", "b", "b"])
    assert history.duplicates == {"a": 2, "b": 1}
    assert history.extra_runs == 3


def test_an_id_handled_but_never_returned_is_unconfirmed_not_lost() -> None:
    # (its enqueue raised after the broker had taken it: a lost receipt)
    history = check(["a"], ["a", "x", "x"])
    assert history.lost == [] and history.unconfirmed == ["x"]
    assert history.duplicates == {"x": 1}, "run twice is run twice, promised or not"


def test_a_producer_line_cut_short_is_not_held_against_the_run(tmp_path: Path) -> None:
    # Given a producer killed while writing its last id
    (tmp_path / "p1").write_text("a\nb\nc")
    (tmp_path / "p2").write_text("d\n")
    # Then the partial line is dropped, the rest read from every file; missing files are empty
    assert returned_ids([tmp_path / "p1", tmp_path / "p2", tmp_path / "absent"]) == ["a", "b", "d"]


def test_handled_records_come_from_every_host_file(tmp_path: Path) -> None:
    (tmp_path / "h1").write_text(json.dumps({"id": "a"}) + "\n")
    (tmp_path / "h2").write_text(json.dumps({"id": "b"}) + "\n" + json.dumps({"id": "a"}) + "\n")
    ids = [str(r["id"]) for r in handled_records([tmp_path / "h1", tmp_path / "h2", tmp_path / "none"])]
    assert sorted(ids) == ["a", "a", "b"]


def test_a_rerun_is_charged_to_the_worker_whose_run_did_not_settle() -> None:
    # Given item 1 run by pid 10, then again by 20 (10's ack was lost), and item 2 run three times
    runs = [
        {"n": 2, "pid": 10, "at": 1.0},
        {"n": 1, "pid": 10, "at": 2.0},
        {"n": 2, "pid": 20, "at": 3.0},
        {"n": 1, "pid": 20, "at": 4.0},
        {"n": 2, "pid": 20, "at": 5.0},
        {"n": 3, "pid": 20, "at": 6.0},
    ]
    # Then each run that came back counts against the pid that ran it, read in time order
    # whatever the order of the lines (several files, one per host)
    assert reruns_by_worker(reversed(runs)) == {10: 2, 20: 1}
    assert reruns_by_worker([{"n": 1, "pid": 10, "at": 1.0}]) == {}
