"""Hot sites remembered across a worker's restart, in ``var_dir/hot-sites/`` (one file per pid).

Why: items moved to a hot site's destination are taken only by workers subscribed to it, and a
worker subscribes only once *it* counts the site hot.  A worker that died (a crash, a SIGKILL, a
recycle) or a daemon restarted left those items where its replacement never looked: the shard
was empty of the site by then, so the site never turned hot again (the supervisor's kill test on
both brokers: items never handled).  So each worker writes the site destinations it is
subscribed to, and a starting worker adopts those of every worker no longer alive on this host:
it subscribes to them and cools them as usual, once idle for ``hot_cool``.

Other hosts do not read these files: a host that is gone for good leaves its workers' hot sites
to the others only when they count the site hot themselves (RabbitMQ: ``hot_hold`` sends the
items back to the group's queue anyway).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HotFile:
    """This worker's file, and the adoption of dead workers' files."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder = folder
        self.pid = pid or os.getpid()
        self.path = folder / f"{self.pid}.json"

    def adopt(self) -> list[str]:
        """The destinations of workers no longer alive (their files then removed), made this
        worker's own and written to its file."""
        found: set[str] = set()
        gone = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            if not path.stem.isdigit() or int(path.stem) == self.pid or _alive(int(path.stem)):
                continue
            with contextlib.suppress(OSError, ValueError):
                found.update(str(d) for d in json.loads(path.read_text()))
            gone.append(path)
        adopted = sorted(found)
        if adopted:
            self.write(adopted)
        for path in gone:
            with contextlib.suppress(OSError):
                path.unlink()
        return adopted

    def write(self, destinations: list[str]) -> None:
        """Replace this worker's list (atomically: written aside, then renamed); never raises."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            aside = self.path.with_suffix(".tmp")
            aside.write_text(json.dumps(sorted(destinations)))
            aside.replace(self.path)
        except OSError as exc:
            log.warning("cannot write %s (hot sites not remembered across a restart): %s", self.path, exc)
