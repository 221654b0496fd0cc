"""Settlements on a clock (issue 14), on real ActiveMQ and RabbitMQ: a finished item's ack is on
the wire within ``ack_flush`` whatever the next handler does, and a retry costs about an ack."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import statusq
from tests.conftest import read_records, run_cli
from tests.e2e.test_supervisor import STUCK_PLUGIN
from tests.stomp import Broker, make_broker, stomp_toml

pytestmark = pytest.mark.e2e

QUICK = 30


@pytest.fixture(params=["activemq", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return make_broker(request.param)


def test_items_finished_before_a_handler_hangs_are_not_run_again_when_its_worker_is_killed(
    broker: Broker, write_config: Callable[..., Path], record_file: Path, plugin_dir: Path
) -> None:
    # Given max_retries = 0, a 0.5 s time limit + 0.5 s grace, 30 quick items and then one whose
    # handler is stuck where SIGALRM cannot reach it (so the supervisor's SIGKILL ends it)
    (plugin_dir / "stuck.py").write_text(STUCK_PLUGIN)
    config = write_config(
        "sqlite:///unused.sqlite",
        stomp_toml(broker),
        queue={"subsystem": "stomp", "max_retries": 0},
        daemon={"time_limit": "0.5s", "time_limit_grace": "0.5s"},
    )
    with statusq.connect(config) as qm:
        for n in range(QUICK):
            qm.enqueue({"n": n}, "count")
        stuck = qm.enqueue({}, "stuck")

    # When one worker runs them, is killed on the stuck one and replaced, until idle
    result = run_cli("daemon", "--workers", "1", "--idle-exit", "3", config=config, timeout=180)

    # Then each quick item ran once: its ack left while the stuck handler was still running
    assert result.returncode == 0, result.stderr[-3000:]
    assert "killing it" in result.stderr, "the stuck handler was not killed by the hard time limit"
    records = read_records(record_file)
    counts = Counter(r["n"] for r in records if r["n"] != "stuck")
    assert sorted(counts) == list(range(QUICK))
    assert [n for n, c in counts.items() if c > 1] == [], "finished items ran again"
    # And only the stuck item is a dead letter (its next delivery is beyond max_retries = 0)
    listed = run_cli("deadletters", "list", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert [d["id"] for d in letters] == [stuck], [(d["id"], d["error"]) for d in letters]
    assert "never finished" in letters[0]["error"]
