"""Which process owns the XMPP connections, and how handlers find its manager.

Exactly one process may hold a site's connection: two sessions with one JID and resource kick
each other off in turn.  ``statusq daemon --group xmpp --workers 1`` runs one such process; the
lock below makes a mistake (``--workers 2``, a second daemon on the host, the overlap of a rolling
restart) harmless: whoever does not hold it stays on standby, connects nothing, and takes over
once the owner exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from statusq.defaults import XMPP_GROUP
from statusq.xmpp.errors import XmppError

if TYPE_CHECKING:
    from statusq.xmpp.manager import XmppManager

_active: XmppManager | None = None


def set_active(manager: XmppManager | None) -> None:
    global _active
    _active = manager


def active() -> XmppManager | None:
    return _active


def require() -> XmppManager:
    """The manager of this process, for the ``xmppout`` and ``xmppconfirm`` handlers."""
    if _active is None:
        raise XmppError(
            f"no XMPP connection in this process (pid {os.getpid()}): items of group {XMPP_GROUP!r} "
            f"must be handled by `statusq daemon --group {XMPP_GROUP} --workers 1`, and the other "
            "daemons must not serve that group (give them --group for theirs)"
        )
    return _active


class OwnerLock:
    """An exclusive ``flock`` on a file under ``var_dir``; released by the kernel when the process
    dies, however it dies, so a crashed owner never blocks its successor."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The owner's pid as it wrote it, for messages ("?" if unreadable)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
