"""Every saved fuzzing input (tests/fuzz/corpus) replayed through its target: the inputs that once
broke something stay fixed (a deep JSON body, a config file that is not UTF-8), and the seeds
keep meaning what they say."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
CASES = sorted((target.name, path) for target in CORPUS.iterdir() for path in target.iterdir())


def test_every_target_has_seeds() -> None:
    assert {name for name, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_a_saved_input_fails_only_as_documented(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())
