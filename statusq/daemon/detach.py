"""``--daemon``: detach from the terminal, for init systems that expect a forking daemon.

Foreground is the default (systemd and supervisord want it).  Detaching is the classic double
fork with ``setsid`` in between, so the daemon is no session leader and can never reacquire a
terminal.  One addition: the process that was started waits on a pipe until the daemon reports
that it started (or why it did not: a pid file held by another daemon), so that
``statusq daemon --daemon`` exits non-zero, with the reason, when the daemon is not running.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
from pathlib import Path
from typing import NoReturn

_STARTUP_WAIT = 60.0  # seconds the launching process waits for the daemon's report


class StartupReport:
    """Held by the detached daemon: tells the launching process how start-up went, once."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def ok(self) -> None:
        self._send("0 started")

    def failed(self, code: int, message: str) -> None:
        self._send(f"{code} {message}")

    def _send(self, text: str) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, text.encode()[:4000])
        os.close(self.fd)
        self.fd = None


def redirect_output(logfile: str | os.PathLike[str] | None) -> None:
    """Point stdout and stderr (and so logging, and every worker's tracebacks) at ``logfile``,
    appended to, or at /dev/null; stdin always reads /dev/null."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(Path(logfile), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640) if logfile else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    for fd in {null, out}:
        os.close(fd)


def detach(logfile: str | os.PathLike[str] | None) -> StartupReport:
    """Become a daemon.  Only the detached process returns; the launching one exits with the
    code the daemon reports (0 once it runs), the intermediate one at once."""
    logfile = Path(logfile).absolute() if logfile else None  # before the chdir below
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() > 0:
        os.close(write_fd)
        _wait_for_report(read_fd)
    os.close(read_fd)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)  # the session leader goes; its child can never get a controlling terminal
    os.chdir("/")  # do not keep a mount busy; every path in the config is absolute already
    os.umask(0o022)
    redirect_output(logfile)
    return StartupReport(write_fd)


def _wait_for_report(fd: int) -> NoReturn:
    # One write of less than PIPE_BUF bytes is one read; an empty read is a daemon that died first.
    ready, _, _ = select.select([fd], [], [], _STARTUP_WAIT)
    text = os.read(fd, 4096).decode(errors="replace") if ready else ""
    code_text, _, message = text.partition(" ")
    if not code_text.isdigit():
        print("statusq: the daemon did not report its start (see its log)", file=sys.stderr, flush=True)
        os._exit(os.EX_SOFTWARE)
    code = int(code_text)
    if code != 0:
        print(f"statusq: {message}", file=sys.stderr, flush=True)
    os._exit(code)
