"""statusq as a plugin author's mypy sees it: installed like any package (not from this
checkout), its ``py.typed`` marker makes the public API typed, so the bundled plugins and a
plugin written outside pass ``mypy --strict``, and a misuse is caught (issue 21)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MYPY = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as pip installs it (a wheel built from this checkout), in a folder of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "statusq" / "py.typed").exists(), "the wheel carries the py.typed marker"
    return target


def mypy(installed: Path, cwd: Path, *files: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run([*MYPY, *files], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_bundled_plugins_pass_mypy_strict_against_the_installed_package(installed: Path, tmp_path: Path) -> None:
    plugins = sorted(str(p) for p in (ROOT / "plugins").rglob("*.py"))
    result = mypy(installed, tmp_path, *plugins)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_outside_plugin_is_checked_and_a_misuse_caught(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(
        textwrap.dedent(
            """
            from statusq import Middleware, PluginApi, QueueHandler, QueueItem, Reject, Retry, current_site


            class Push(QueueHandler):
                def handle(self, item: QueueItem) -> bool:
                    if item.attempt > 3:
                        raise Reject("too many")
                    if not current_site().name:
                        raise Retry(delay="30s")
                    return True


            def register(api: PluginApi) -> None:
                api.register_handler("push", Push, max_retries=10)
                api.add_middleware(Middleware())
            """
        )
    )
    assert mypy(installed, tmp_path, "good.py").returncode == 0

    (tmp_path / "bad.py").write_text(
        textwrap.dedent(
            """
            from statusq import PluginApi


            def register(api: PluginApi) -> None:
                api.register_handler("push", 42)
            """
        )
    )
    result = mypy(installed, tmp_path, "bad.py")
    assert result.returncode == 1 and 'expected "type[QueueHandler]"' in result.stdout, result.stdout
