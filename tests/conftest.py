"""Fixtures shared by the integration and end-to-end tests: databases, configs, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.servers import require

ROOT = Path(__file__).resolve().parent.parent
STATUSQ = [sys.executable, "-m", "statusq.cli.main"]
PG_HOST, PG_PORT, PG_DB = "127.0.0.1", 5432, "test"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a schema of their own, dropped afterwards."""
    require(PG_HOST, PG_PORT, "PostgreSQL")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = f"postgresql://{PG_HOST}:{PG_PORT}/{PG_DB}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{admin}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test's own schema (:func:`pg_schema`)."""
    with pg_schema() as url:
        try:
            yield url
        finally:
            close_opened()  # before the drop: a consumer's last settlements go into its tables


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.sqlite'}"
    url: str = request.getfixturevalue("pg_url")
    return url


#: A plugin's ``record(**fields)``: one JSON line per call appended to TEST_RECORD, in one write
#: (O_APPEND), so the lines of several worker processes never mix.  For plugins the tests write.
RECORDER = """
def record(**fields):
    import json, os
    fd = os.open(os.environ["TEST_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(fields) + "\\n").encode())
    finally:
        os.close(fd)
"""


COUNTER_PLUGIN = '''
"""A plugin written outside the repository, as a user would: records what it handles."""
import os, json, time
from statusq import QueueHandler, current_site

LOG = os.environ["TEST_RECORD"]

def record(**fields):
    line = json.dumps(fields) + "\\n"
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())   # one write with O_APPEND: lines from processes never mix
    finally:
        os.close(fd)

class Counter(QueueHandler):
    def handle(self, item):
        p = item.payload
        action = p.get("action", "ok") if isinstance(p, dict) else "ok"
        record(id=item.id, n=p.get("n") if isinstance(p, dict) else None, site=item.site,
               attempt=item.attempt, pid=os.getpid(), action=action, at=time.time(),
               greeting=current_site().settings.get("counter", {}).get("greeting"))
        if action == "sleep":
            time.sleep(p["seconds"])
        elif action == "false":
            return False
        elif action == "raise":
            raise ValueError("boom " + str(p.get("n")))
        elif action == "suicide":
            os.kill(os.getpid(), 9)
        elif action == "leak":
            global HOARD
            HOARD = globals().get("HOARD", []) + [bytearray(p["mb"] << 20)]
        return True

def register(api):
    api.register_handler("count", Counter)
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "my-plugins"
    folder.mkdir()
    (folder / "counter.py").write_text(COUNTER_PLUGIN)
    return folder


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "handled.jsonl"
    monkeypatch.setenv("TEST_RECORD", str(path))
    return path


def read_records(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    text = path.read_text()
    # Only whole lines: a handler may be writing the last one as it is read (a torn line once
    # failed a test with "Unterminated string"); it is read whole at the next look
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line]


@pytest.fixture
def write_config(tmp_path: Path, plugin_dir: Path) -> Callable[..., Path]:
    """Write a statusq.toml in tmp_path: the counter plugin, fast retries, extra TOML appended."""

    def write(
        db_url: str,
        extra: str = "",
        *,
        queue: dict[str, Any] | None = None,
        daemon: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Path:
        import json

        queue = {
            "subsystem": "db",
            "db_url": db_url,
            "max_retries": 2,
            "retry_delay": "10ms",
            "retry_delay_max": "50ms",
            "claim_timeout": "30s",
            **(queue or {}),
        }
        # Two workers on any machine, not one per CPU: the bounds the tests assert (duplicates,
        # connections, memory) were measured on two cores, and a CI machine with more ran more
        # workers than they allowed for.  A test that wants another number says so.
        daemon = {"time_limit": "20s", "time_limit_grace": "5s", "workers": 2, **(daemon or {})}
        # Off unless a test asks: many daemons run one after another, and a metrics port left
        # bound by one must not be what the next test depends on.
        metrics = {"enabled": False, **(metrics or {})}

        def table(values: dict[str, Any]) -> str:
            return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())

        path = tmp_path / "statusq.toml"
        path.write_text(
            f'var_dir = "var"\n[queue]\n{table(queue)}[daemon]\n{table(daemon)}'
            f'[metrics]\n{table(metrics)}[plugins]\npaths = ["{plugin_dir.name}"]\n' + textwrap.dedent(extra)
        )
        return path

    return write


def run_cli(
    *args: str, config: Path | None = None, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The CLI, run to its end.  Past ``timeout`` (kept under the suite's 300 s per test, so this
    fires first) it fails with the tail of what the command logged: a daemon that never went
    idle says why in its log, which a timeout of the whole test would throw away."""
    argv = [*STATUSQ, *(["--config", str(config)] if config else []), *args]
    try:
        return subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=min(timeout, 270), env=os.environ
        )
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        command = " ".join(args)
        raise AssertionError(
            f"statusq {command} still running after {exc.timeout:g}s; it said:\n{said[-6000:]}"
        ) from None


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "condition") -> None:
    """Poll until ``predicate()`` is true; every wait in the tests is bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


#: Queue managers (and whatever else) the running test opened in-process, closed when it ends.
_OPENED: list[Closable] = []


def closed_after_test(thing: C) -> C:
    """``thing``, closed when the test ends, pass or fail.  A database manager closes its
    consumers with it: one left open kept its settlement thread retrying into the test's dropped
    schema, its errors printed in the middle of later tests' output."""
    _OPENED.append(thing)
    return thing


def close_opened() -> None:
    while _OPENED:
        _OPENED.pop().close()


@pytest.fixture(autouse=True)
def _nothing_opened_outlives_its_test() -> Iterator[None]:
    """And no thread of statusq's the test started is left running: a leaked one works on into
    later tests (a settlement thread wrote errors into their output for minutes)."""
    before = set(threading.enumerate())
    yield
    close_opened()
    deadline = time.monotonic() + 2.0  # a thread told to stop may take a moment to end
    while left := [t for t in threading.enumerate() if t not in before and t.name.startswith("statusq")]:
        if time.monotonic() > deadline:
            pytest.fail(f"threads left running by this test (close what it opened): {[t.name for t in left]}")
        left[0].join(0.05)


#: Daemons started by the running test; :func:`_no_daemon_outlives_its_test` kills what is left.
_STARTED: list[subprocess.Popen[str]] = []


def start_daemon(config: Path, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
    argv = [*STATUSQ, "--config", str(config), "daemon", *args]
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=os.environ)
    _STARTED.append(daemon)
    return daemon


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way must not leave a daemon working on (and holding ports, brokers'
    consumers, database claims) into the next test: SIGKILL its supervisor, whose workers then
    see their lifeline close and exit."""
    yield
    while _STARTED:
        daemon = _STARTED.pop()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(timeout=30)
