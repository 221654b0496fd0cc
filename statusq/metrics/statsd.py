"""statsd-style UDP events, the modern form of StatusNet's UDP monitor: fire and forget.

Lines are ``<prefix>.<name>:<value>|c`` (counters), ``|ms`` (timings) and ``|g`` (gauges); one
event's lines travel in one datagram, newline-separated, as statsd, Telegraf and the Datadog
agent read them.  Sending never blocks and never raises: a full socket buffer, an unreachable
port (ECONNREFUSED from an earlier datagram) or a name that does not resolve loses the event, is
logged once in a while, and the item goes on.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
#: How long an address that failed to resolve is left alone, and how often failures are logged.
_QUIET = 60.0
_MAX_DATAGRAM = 1400  # fits one Ethernet frame: statsd servers read at most one datagram per event


def clean(part: str) -> str:
    """A name part statsd cannot misread: dots, colons, pipes and the rest become ``_``."""
    return _UNSAFE.sub("_", part) or "_"


def counter(name: str, value: int = 1) -> str:
    return f"{name}:{value}|c"


def timing(name: str, seconds: float) -> str:
    return f"{name}:{seconds * 1000:.3f}|ms"


def gauge(name: str, value: float) -> str:
    return f"{name}:{value:g}|g"


Resolver = Callable[[str, int], tuple[int, tuple[str, int]]]


def _resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, (str(address[0]), int(address[1]))


class Statsd:
    """One process's sender; ``prefix`` is ``[metrics] statsd_prefix``."""

    def __init__(self, address: str, prefix: str, *, resolve: Resolver = _resolve) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.prefix = ".".join(clean(p) for p in prefix.split(".") if p)
        self._resolve = resolve
        self._socket: socket.socket | None = None
        self._target: tuple[str, int] | None = None
        self._retry_at = 0.0
        self._warned_at = -_QUIET
        self.dropped = 0

    def name(self, *parts: str) -> str:
        return ".".join([self.prefix, *(clean(p) for p in parts)] if self.prefix else [clean(p) for p in parts])

    def send(self, *lines: str) -> None:
        """Send ``lines`` as one datagram (split if too long); never blocks, never raises."""
        if not lines:
            return
        data = "\n".join(lines).encode()
        try:
            sock = self._connect()
            if sock is None:
                self.dropped += 1
                return
            if len(data) <= _MAX_DATAGRAM:
                sock.send(data)
            else:
                for line in lines:
                    sock.send(line.encode())
        except OSError as exc:  # EAGAIN, ECONNREFUSED (nobody listens), ENETUNREACH...
            self.dropped += 1
            self._warn("statsd %s:%d: event lost (%s)", self.host, self.port, exc)

    def _connect(self) -> socket.socket | None:
        if self._socket is not None:
            return self._socket
        now = time.monotonic()
        if now < self._retry_at:
            return None
        try:
            family, self._target = self._resolve(self.host, self.port)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect(self._target)  # a datagram socket: no packet sent, only the route chosen
        except OSError as exc:
            self._retry_at = now + _QUIET
            self._warn(
                "statsd %s:%d: cannot resolve or route (%s); events dropped for %gs", self.host, self.port, exc, _QUIET
            )
            return None
        self._socket = sock
        return sock

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _QUIET:
            self._warned_at = now
            log.warning(message, *args)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
