"""Handler failures reported to Sentry by a daemon's worker, received by a local endpoint that
reads the SDK's real envelopes: one event per item that ends dead-lettered, none per retry
(unless ``report_retries``), tagged with the item's site and transport."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import statusq
from tests.conftest import start_daemon, wait_for

pytestmark = pytest.mark.e2e

PROJECT = 42


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """Sentry's envelope: a header line, then items, each a header line and a payload (of the
    header's ``length`` when given, else up to the next newline)."""
    _header, _, rest = body.partition(b"\n")
    items = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        item_header = json.loads(line)
        if "length" in item_header:
            payload, rest = rest[: item_header["length"]], rest[item_header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item_header, payload))
    return items


class SentryEndpoint:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.paths: list[str] = []
        endpoint = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                endpoint.paths.append(self.path)
                for item_header, payload in parse_envelope(body):
                    if item_header.get("type") == "event":
                        endpoint.events.append(json.loads(payload))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def dsn(self) -> str:
        return f"http://0123456789abcdef@127.0.0.1:{self.server.server_address[1]}/{PROJECT}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sentry() -> Iterator[SentryEndpoint]:
    endpoint = SentryEndpoint()
    yield endpoint
    endpoint.close()


def handled(record_file: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record_file.read_text().splitlines()] if record_file.exists() else []


@pytest.mark.parametrize("report_retries", [False, True])
def test_one_event_per_dead_letter_with_the_items_context(
    report_retries: bool,
    sentry: SentryEndpoint,
    write_config: Callable[..., Path],
    record_file: Path,
    tmp_path: Path,
) -> None:
    extra = f'[sentry]\ndsn = "{sentry.dsn}"\nenvironment = "e2e"\nreport_retries = {str(report_retries).lower()}\n'
    config = write_config(f"sqlite:///{tmp_path / 'q.sqlite'}", extra, queue={"max_retries": 2})
    # Given an item that always fails (three attempts) and one that succeeds
    with statusq.connect(config) as qm:
        failing = qm.enqueue({"n": 1, "action": "raise"}, "count", site="a.example")
        qm.enqueue({"n": 2}, "count", site="a.example")
    # When a daemon runs them both to the end
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: len(handled(record_file)) == 4, timeout=60, what="three attempts and one success")
        wanted = 3 if report_retries else 1
        wait_for(lambda: len(sentry.events) >= wanted, timeout=30, what=f"{wanted} Sentry event(s)")
        time.sleep(1.0)  # an event too many would arrive in this time: the SDK sends at once
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0
    # Then Sentry got one event for the dead letter (and one per failed attempt, if asked)
    assert len(sentry.events) == wanted
    assert all(path == f"/api/{PROJECT}/envelope/" for path in sentry.paths)
    last = sentry.events[-1]
    assert last["tags"]["statusq.site"] == "a.example"
    assert last["tags"]["statusq.transport"] == "count"
    assert last["tags"]["statusq.outcome"] == "dead"
    assert last["tags"]["statusq.failure"] == "handler_error"
    assert last["environment"] == "e2e"
    item = last["contexts"]["statusq item"]
    assert (item["id"], item["attempt"]) == (failing, 3)
    (exception,) = last["exception"]["values"]
    assert (exception["type"], exception["value"]) == ("ValueError", "boom 1")
    assert exception["stacktrace"]["frames"], "the handler's traceback travels with the event"
    if report_retries:
        assert [e["tags"]["statusq.outcome"] for e in sentry.events] == ["retry", "retry", "dead"]
