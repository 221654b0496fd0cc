"""The ``site`` label, bounded: a host may serve 10,000 sites, and a series per site and transport
and outcome would be hundreds of thousands of series nobody graphs.

``[metrics] site_labels`` chooses: ``"none"`` (one ``_all`` series), a list (those sites, the rest
``_other``), ``"all"`` (every site: for small hosts only), or ``"auto"`` (the first ``max_sites``
sites that settle an item get their own series, every later one is ``_other``).

Under ``"auto"`` the admitted sites are shared by every worker of a daemon through a small file
in its metrics folder, locked while it grows: without it, each worker (and each replacement of a
crashed one) would admit its own first ``max_sites``, and the bound would be per process instead
of per daemon.  The file only grows, and stops growing at ``max_sites``, so a site once told
``_other`` stays ``_other`` and no process needs to ask again.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

ALL = "_all"
OTHER = "_other"
#: Decisions a process remembers before it starts over (a bound on memory, not on series).
_CACHE_MAX = 100_000


class SiteLabels:
    """Maps a site name to the value of its ``site`` label; one lookup in a dict once seen."""

    def __init__(self, mode: str | Sequence[str], max_sites: int, shared: Path | None = None) -> None:
        self.mode = mode if isinstance(mode, str) else "list"
        self.listed = frozenset(mode) if not isinstance(mode, str) else frozenset()
        self.max_sites = max_sites
        self.shared = shared
        self._known: dict[str, str] = {}
        #: "auto": the sites admitted, as far as this process needs to know (all of them once full).
        self._admitted: set[str] = set()
        self._full = max_sites <= 0

    def __call__(self, site: str) -> str:
        label = self._known.get(site)
        if label is None:
            if len(self._known) >= _CACHE_MAX:
                self._known.clear()
            label = self._known[site] = self._decide(site)
        return label

    def _decide(self, site: str) -> str:
        if self.mode == "none":
            return ALL
        if self.mode == "all":
            return site
        if self.mode == "list":
            return site if site in self.listed else OTHER
        return site if self._admit(site) else OTHER

    def _admit(self, site: str) -> bool:
        if self._full:
            return site in self._admitted  # the final set: it never changes again
        if self.shared is None:
            if site not in self._admitted and len(self._admitted) >= self.max_sites:
                self._full = True
                return False
            self._admitted.add(site)
            return True
        try:
            return self._admit_shared(site, self.shared)
        except OSError as exc:
            # Monitoring never fails an item: without the file, fall back to this process's own.
            log.warning("cannot use %s for site labels (%s); deciding per process", self.shared, exc)
            self.shared = None
            return self._admit(site)

    def _admit_shared(self, site: str, path: Path) -> bool:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            admitted = set(_read_all(fd).split())
            if site not in admitted and len(admitted) < self.max_sites:
                os.write(fd, f"{site}\n".encode())
                admitted.add(site)
            if len(admitted) >= self.max_sites:
                self._full, self._admitted = True, admitted
            return site in admitted
        finally:
            os.close(fd)  # releases the lock


def _read_all(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace")
