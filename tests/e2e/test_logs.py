"""A daemon with ``[log] format = "json"``: every line it writes is one JSON object, and the lines
about an item carry its site, transport, id, attempt and the worker that ran it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from tests.conftest import start_daemon

pytestmark = pytest.mark.e2e


def test_a_json_line_per_event_with_the_item_fields(
    write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    config = write_config(
        f"sqlite:///{tmp_path / 'queue.sqlite'}",
        '[log]\nformat = "json"\n[log.levels]\n"statusq.dispatcher" = "ERROR"\n',
    )
    with statusq.connect(config) as qm:
        ok = qm.enqueue({"n": 1}, "count", site="a.example")
        failing = qm.enqueue({"n": 2, "action": "raise"}, "count", site="b.example")
    log = tmp_path / "daemon.log"
    assert start_daemon(config, "--workers", "1", "--idle-exit", "3", log=log).wait(timeout=120) == 0

    lines = [json.loads(text) for text in log.read_text().splitlines() if text.strip()]  # each one parses
    assert all({"time", "level", "logger", "message", "pid"} <= line.keys() for line in lines)
    done = [line for line in lines if line["message"].startswith("done ") and line.get("id") == ok]
    assert len(done) == 1
    assert (done[0]["site"], done[0]["transport"], done[0]["attempt"], done[0]["worker"]) == (
        "a.example",
        "count",
        1,
        1,
    )
    retries = [line for line in lines if line["message"].startswith("retry ") and line.get("id") == failing]
    assert [line["attempt"] for line in retries] == [1, 2] and all(line["site"] == "b.example" for line in retries)
    supervisor = [line for line in lines if "worker" not in line]
    assert supervisor, "the supervisor's own lines are JSON too"
