"""A spool folder for producers that cannot speak STOMP or SQL (a PHP app, a shell script).

They drop one JSON file per item into ``<var_dir>/spool/``::

    {"transport": "greet", "site": "example.org", "payload": {"name": "Ada"}, "priority": 5}

Serial queue ``spool``: every 10 seconds the 50 oldest files (by name: prefix them with a
timestamp) become items of transport ``spool``, whose handler enqueues each file's item and
deletes the file.  Serial means one run at a time: the next run starts once every file of the
previous one is settled (or the run hung), so a file is not picked twice while in flight.

A file that is not valid JSON, lacks ``transport`` or names an invalid transport or site is moved
to ``spool/bad/`` (retrying cannot fix it).  If the backend is down the item is retried, the
file stays, and a later run picks it up again: nothing is lost; a crash between enqueueing and
deleting may enqueue a file twice (at-least-once, as everywhere in statusq).
"""

from __future__ import annotations

import heapq
import json
import logging
import os
from pathlib import Path
from typing import Any

from statusq import DataError, PluginApi, QueueHandler, QueueItem, QueueManager
from statusq.config import Config
from statusq.dispatcher import WorkItem
from statusq.runtime import Runtime

log = logging.getLogger("statusq.plugin.spool")


def spool_dir(config: Config) -> Path:
    return Path(config.var_dir) / "spool"


def oldest(directory: Path, limit: int) -> list[WorkItem]:
    """The ``limit`` first ``*.json`` files by name; a heap, so a backlog of 100,000 files is cheap."""
    if not directory.is_dir():
        return []
    with os.scandir(directory) as entries:
        names = heapq.nsmallest(limit, (e.name for e in entries if e.name.endswith(".json") and e.is_file()))
    return [WorkItem(name, payload={"file": str(directory / name)}) for name in names]


class SpoolHandler(QueueHandler):
    """Enqueues one spooled file's item, then deletes the file."""

    config: Config  # set by register() on a subclass: handlers are built without arguments

    def __init__(self) -> None:
        self._qm: QueueManager | None = None

    def queue_manager(self) -> QueueManager:
        if self._qm is None:
            self._qm = Runtime(self.config).queue_manager()
        return self._qm

    def handle(self, item: QueueItem) -> bool:
        path = Path(item.payload["file"])
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return True  # handled already (a run that hung and was overtaken)
        try:
            spooled = self._parse(text)
            self.queue_manager().enqueue(
                spooled["payload"],
                spooled["transport"],
                site=spooled.get("site"),
                priority=spooled.get("priority"),
                headers=spooled.get("headers"),
            )
        except (ValueError, KeyError, TypeError, DataError) as exc:
            self._park(path, exc)
            return True
        path.unlink(missing_ok=True)
        return True

    @staticmethod
    def _parse(text: str) -> dict[str, Any]:
        spooled = json.loads(text)
        if not isinstance(spooled, dict) or "transport" not in spooled or "payload" not in spooled:
            raise ValueError('a spool file is a JSON object with "transport" and "payload"')
        return spooled

    def _park(self, path: Path, exc: Exception) -> None:
        bad = path.parent / "bad"
        bad.mkdir(exist_ok=True)
        path.replace(bad / path.name)
        log.error("spool file %s moved to %s: %s", path.name, bad, exc)


def register(api: PluginApi) -> None:
    directory = spool_dir(api.config)
    handler = type("SpoolHandler", (SpoolHandler,), {"config": api.config})
    api.register_handler("spool", handler)
    api.register_queue(
        "spool",
        kind="serial",
        transport="spool",
        source=lambda limit: oldest(directory, limit),
        frequency="10s",
        items=50,
        timeout="5m",
        description="Move files from the spool folder onto their queues",
    )
