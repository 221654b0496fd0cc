"""statusq.contrib.django in a real Django project (tests/django_project), run in a process of its
own: enqueue_on_commit sends at the commit and never on a rollback (Django's on_commit: the same
on every backend; counted here on the database backend); enqueue_in_transaction writes the item
in Django's own transaction (the app's database is the queue's), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_items_follow_the_django_transaction(
    backend: str, write_config: Callable[..., Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app_db = str(tmp_path / "app.sqlite") if backend == "sqlite" else request.getfixturevalue("pg_url")
    db_url = f"sqlite:///{app_db}" if backend == "sqlite" else app_db
    config = write_config(db_url)
    env = {**os.environ, "STATUSQ_CONFIG": str(config), "APP_DB": app_db, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.django_project.scenario", "--in-transaction"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {
        "on_commit_before": 0,
        "on_commit_after": 1,
        "on_commit_rolled_back": 1,
        "bad_argument": "InvalidArgument",
        "in_transaction_rolled_back": 1,
        "in_transaction_committed": 2,
        "notices": 2,
    }
