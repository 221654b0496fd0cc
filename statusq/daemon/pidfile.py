"""``--pidfile``: one daemon per pid file, and a file that never lies about who holds it.

The supervisor holds an exclusive ``flock`` on the file for as long as it runs.  The kernel drops
the lock when the process dies however it dies, so a file left behind by a crash is stale by
construction and is simply taken over, while a running daemon's file cannot be: no guessing from
pids that may have been reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from statusq.errors import StatusqError


class PidFileError(StatusqError):
    """The pid file is held by a running daemon, or cannot be written."""

    exit_code = os.EX_CANTCREAT


class PidFile:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).absolute()
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PidFileError(f"{self.path}: cannot open the pid file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise PidFileError(f"{self.path}: held by a running daemon (pid {holder}); not starting") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        """Remove the file and drop the lock (only the process that acquired it may)."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> PidFile:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
