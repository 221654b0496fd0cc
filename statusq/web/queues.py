"""The periodic queues for the page: their declarations, their views, and the settings form.

Declarations come from plugins, and the supervisor that serves the page imports no plugin (a
plugin failing at import must kill workers, never the supervisor).  So the declarations are read
by a short-lived child process (``python -m statusq.cli.specs``) and kept for a while: they only
change when the plugins' code does.  Everything else is the dispatcher's own: the same store and
the same rules as ``statusq queues`` and ``statusq queues set``, so every daemon applies a change
from the page at its next tick, without a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import fields
from typing import Any

from statusq.config import Config
from statusq.dispatcher.status import QueueView, current_views, queue_view
from statusq.errors import StatusqError
from statusq.periodic import QueueSpec

#: Declarations are read again after this long (a reload may have brought new plugin code).
SPECS_TTL = 30.0
SPECS_TIMEOUT = 60.0
_SPEC_FIELDS = tuple(f.name for f in fields(QueueSpec) if f.name not in ("source", "members"))


class SpecError(StatusqError):
    """The plugins' queue declarations could not be read."""


def specs_to_json(specs: list[QueueSpec]) -> str:
    return json.dumps([{name: getattr(spec, name) for name in _SPEC_FIELDS} for spec in specs])


def specs_from_json(text: str) -> list[QueueSpec]:
    try:
        return [QueueSpec(**{k: v for k, v in data.items() if k in _SPEC_FIELDS}) for data in json.loads(text)]
    except (TypeError, ValueError, AttributeError) as exc:
        raise SpecError(f"unreadable queue declarations: {exc}") from None


class SpecCache:
    """The declarations, read by a child process at most every :data:`SPECS_TTL` seconds."""

    def __init__(self, config_path: str | None, ttl: float = SPECS_TTL) -> None:
        self.config_path = config_path
        self.ttl = ttl
        self._lock = threading.Lock()
        self._specs: list[QueueSpec] | None = None
        self._read_at = 0.0

    def get(self) -> list[QueueSpec]:
        with self._lock:
            if self._specs is None or time.monotonic() - self._read_at > self.ttl:
                self._specs = self._read()
                self._read_at = time.monotonic()
            return self._specs

    def _read(self) -> list[QueueSpec]:
        argv = [sys.executable, "-m", "statusq.cli.specs", *([self.config_path] if self.config_path else [])]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SPECS_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SpecError(f"cannot read the queue declarations: {exc}") from None
        # The exit code is no evidence: the supervisor reaps every child it has, this one too.
        if not done.stdout.startswith("["):
            why = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise SpecError(f"cannot read the queue declarations: {why[0]}")
        return specs_from_json(done.stdout)


def views(config: Config, specs: list[QueueSpec]) -> list[QueueView]:
    """What ``statusq queues`` shows, row for row."""
    return current_views(config.db_url, specs)


def apply_settings(config: Config, spec: QueueSpec, values: dict[str, Any]) -> QueueView:
    """Store new overrides exactly as ``statusq queues set`` does (a new frequency or batch size
    also moves the next run, counted from the last one)."""
    store = _store(config)
    try:
        row = store.change_settings(spec, values, time.time())
    finally:
        store.close()
    return queue_view(spec, row, time.time())


def _store(config: Config) -> Any:
    from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415 -- SQLAlchemy: only when the page is used

    return DispatchStore(config.db_url)
