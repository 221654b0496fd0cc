"""``python -m tests.fuzz.run TARGET [atheris/libFuzzer flags]``: one target under atheris.

Reads the saved seeds in tests/fuzz/corpus/TARGET and what earlier runs found in
var/fuzz/TARGET, where this run's finds go too (the saved corpus stays small and reviewed).  A
crash is written to the working folder as ``crash-<hash>``: once fixed, save it in the corpus
under a name that says what it was, so the suite replays it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["statusq"]):
    from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parent / "corpus"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer flags]")
    name = sys.argv[1]
    found = Path("var") / "fuzz" / name
    found.mkdir(parents=True, exist_ok=True)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(found), str(CORPUS / name)], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
