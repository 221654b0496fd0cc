"""The page's HTTP server: the standard library's threaded server, in threads of the supervisor.

No web framework: four pages and a few forms do not need one, and the supervisor should carry as
little as it can.  The supervisor forks its workers while these threads run; a worker must not
keep the listening socket (it would hold the port after the daemon is gone), so each fork's child
closes it at once (:func:`os.register_at_fork`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from statusq.forklock import FORK_LOCK
from statusq.web.app import App, Response

log = logging.getLogger(__name__)

#: A slow or stalled client is dropped after this long instead of holding a thread.
REQUEST_TIMEOUT = 30.0
_LIVE: weakref.WeakSet[ThreadingHTTPServer] = weakref.WeakSet()


def _close_in_child() -> None:
    for server in list(_LIVE):
        server.socket.close()


os.register_at_fork(after_in_child=_close_in_child)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT
    server_version = "statusq"
    sys_version = ""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= 64 * 1024:
            self._send(Response(413, b"request too large", "text/plain; charset=utf-8"))
            return
        body = self.rfile.read(length) if length else b""
        headers = {key: value for key, value in self.headers.items()}
        try:
            with FORK_LOCK:  # the page reads databases from a thread of the supervisor (statusq.forklock)
                response = self.server.app.handle(method, self.path, headers, body)
        except Exception:  # one failing page must not take the server down
            log.exception("web page: %s %s failed", method, self.path[:200])
            response = Response(500, b"internal error: see the daemon's log", "text/plain; charset=utf-8")
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for key, value in response.all_headers().items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web page: %s %s", self.address_string(), format % args)


class WebServer:
    """Serves ``app`` on ``listen`` (``host:port``) from a thread until :meth:`stop`."""

    def __init__(self, app: App, listen: str) -> None:
        self.app = app
        self.listen = listen
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where it listens (the real port when ``listen`` asked for port 0)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Bind and serve; raises OSError when the address cannot be had."""
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = _Server((host, int(port)), self.app, family)
        _LIVE.add(self._server)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="statusq-web", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        _LIVE.discard(self._server)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
