"""With an optional extra absent, statusq runs unchanged, and a config asking for it fails at
start naming the extra to install.  The extras are blocked in the subprocess's ``sys.modules``
(None there means "not installed" to the import system), as on a machine without them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

BLOCKED = ("opentelemetry", "opentelemetry.trace", "opentelemetry.sdk", "sentry_sdk")
BLOCK = f"import sys\nfor m in {BLOCKED!r}: sys.modules[m] = None\n"


def without_extras(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code, *args], capture_output=True, text=True, timeout=120, check=False
    )


def daemon_without_extras(config: Path) -> subprocess.CompletedProcess[str]:
    code = "from statusq.cli.main import main\nsys.argv = ['statusq', *sys.argv[1:]]\nraise SystemExit(main())"
    return without_extras(code, "--config", str(config), "daemon", "--workers", "1", "--idle-exit", "1")


@pytest.mark.parametrize(
    ("extra", "toml"),
    [
        ("otel", '[tracing]\nenabled = true\nexporter = "console"\n'),
        ("sentry", '[sentry]\ndsn = "http://key@127.0.0.1:9/1"\n'),
    ],
)
def test_a_config_asking_for_a_missing_extra_fails_at_start_naming_it(
    extra: str, toml: str, write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", toml)
    result = daemon_without_extras(config)
    assert result.returncode == 78, result.stderr  # EX_CONFIG, before any worker is forked
    assert f"pip install 'statusq[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_extras_a_plain_config_runs_unchanged(
    write_config: Callable[..., Path], record_file: Path, tmp_path: Path
) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}")
    assert run_cli("enqueue", "count", '{"n": 1}', "--site", "a.example", config=config).returncode == 0
    result = daemon_without_extras(config)
    assert result.returncode == 0, result.stderr
    assert '"n": 1' in record_file.read_text()


def test_a_producer_asking_for_tracing_without_the_extra_is_told_which(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", "[tracing]\nenabled = true\n")
    result = without_extras(f"import statusq\nstatusq.connect({str(config)!r}).enqueue({{}}, 'count')")
    assert result.returncode == 1
    assert "pip install 'statusq[otel]'" in result.stderr
