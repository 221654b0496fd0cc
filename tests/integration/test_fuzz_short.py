"""A short coverage-guided run of each fuzzing target (atheris), from the saved corpus: a few
thousand new inputs each, a few seconds.  ``make fuzz`` runs them for minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_short_fuzzing_run_finds_nothing(target: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", target, "-runs=20000", "-timeout=10"],
        cwd=tmp_path,  # var/fuzz/<target> and any crash file land here, not in the checkout
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    crashes = [p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-"))]
    assert result.returncode == 0 and not crashes, result.stderr[-3000:]
