"""Traces across the queue, on every backend that runs a daemon: a span opened around
``enqueue`` in this process shares its trace with the handler's span in the daemon's worker,
which the worker exports over OTLP/HTTP to a receiver run here that decodes the real protobuf
payload (``ExportTraceServiceRequest``), as a collector would."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider

import statusq
from tests.conftest import start_daemon, wait_for
from tests.stomp import make_broker, stomp_toml

pytestmark = pytest.mark.e2e

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "activemq", "rabbitmq"]


class Collector:
    """An OTLP/HTTP trace receiver: every span of every request it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        collector = self

        class Receive(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.paths.append(self.path)
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        for span in scope.spans:
                            collector.spans.append(span)
                            collector.resources.append(resource)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receive)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def item_span(self, item_id: str, attempt: int = 1) -> Span | None:
        for span in self.spans:
            attributes = {a.key: a.value for a in span.attributes}
            message_id = attributes.get("messaging.message.id")
            found = message_id is not None and message_id.string_value == item_id
            if found and attributes["statusq.attempt"].int_value == attempt:
                return span
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def attributes(span: Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_handlers_span_shares_the_trace_of_the_span_around_enqueue(
    backend: str,
    collector: Collector,
    write_config: Callable[..., Path],
    record_file: Path,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tracing = f'[tracing]\nenabled = true\nexporter = "otlp-http"\nendpoint = "{collector.endpoint}"\n'
    tracing += 'service_name = "statusq-e2e"\n'
    if backend in ("activemq", "rabbitmq"):
        broker = make_broker(backend)
        config = write_config(
            "sqlite:///unused.sqlite", stomp_toml(broker) + tracing, queue={"subsystem": "stomp", "max_retries": 1}
        )
    else:
        url = f"sqlite:///{tmp_path / 'q.sqlite'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
        config = write_config(url, tracing, queue={"max_retries": 1})
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the worker exports every 0.1 s, not 5 s

    # Given a web request's span (this process's own provider: the application's, not statusq's)
    tracer = TracerProvider().get_tracer("the web application")
    with statusq.connect(config) as qm:
        with tracer.start_as_current_span("POST /notice") as web_request:
            ok = qm.enqueue({"n": 1}, "count", site="a.example")
            failing = qm.enqueue({"n": 2, "action": "raise"}, "count", site="a.example")
        foreign = qm.enqueue({"n": 3}, "count", site="b.example")  # no span current: no context
    # When a daemon runs the items
    daemon = start_daemon(config, "--workers", "1", log=tmp_path / "daemon.log")
    try:
        wait_for(
            lambda: all(
                collector.item_span(i, a) is not None for i, a in ((ok, 1), (failing, 1), (failing, 2), (foreign, 1))
            ),
            timeout=60,
            what="the four item spans at the collector",
        )
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=60) == 0
    # Then the handler's span is a CONSUMER child of the request's span, in its trace
    expected_trace = web_request.get_span_context().trace_id.to_bytes(16, "big")
    span = collector.item_span(ok)
    assert span is not None
    assert span.trace_id == expected_trace
    assert span.parent_span_id == web_request.get_span_context().span_id.to_bytes(8, "big")
    assert span.kind == Span.SpanKind.SPAN_KIND_CONSUMER
    backend_name = "stomp" if backend in ("activemq", "rabbitmq") else "db"
    assert attributes(span) | {"messaging.message.id": ok} == {
        "messaging.system": "statusq",
        "messaging.operation.type": "process",
        "messaging.destination.name": "count",
        "messaging.message.id": ok,
        "statusq.site": "a.example",
        "statusq.transport": "count",
        "statusq.attempt": 1,
        "statusq.backend": backend_name,
        "statusq.outcome": "done",
    }
    assert all(path == "/v1/traces" for path in collector.paths)
    assert {r.get("service.name") for r in collector.resources} == {"statusq-e2e"}
    # And the retry links to the first attempt; the last attempt records the dead letter
    first, second = collector.item_span(failing, 1), collector.item_span(failing, 2)
    assert first is not None and second is not None
    assert first.trace_id == second.trace_id == expected_trace
    assert [link.span_id for link in second.links] == [first.span_id]
    assert second.status.code == second.status.STATUS_CODE_ERROR
    assert "dead-lettered" in [event.name for event in second.events]
    # And an item enqueued with no trace context starts a trace of its own
    lone = collector.item_span(foreign)
    assert lone is not None and lone.parent_span_id == b"" and lone.trace_id != expected_trace
