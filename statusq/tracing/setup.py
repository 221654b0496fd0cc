"""What ``[tracing]`` turns on: the producer's injection, a worker's tracer provider and exporter.

OpenTelemetry is an optional extra, so its modules are imported here, inside the functions, and
only when the config asks for tracing; without the extra such a config fails at start with the
command that installs it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from typing import TYPE_CHECKING

from statusq.config import Config, TracingConfig
from statusq.errors import ConfigError
from statusq.middleware import Middleware

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_NEEDS = {
    "otlp-http": ("opentelemetry.exporter.otlp.proto.http",),
    "otlp-grpc": ("opentelemetry.exporter.otlp.proto.grpc",),
    "console": (),
    "none": (),
}


def check(config: Config) -> None:
    """Fail with the install command when ``[tracing]`` asks for what is not installed."""
    tracing = config.tracing
    if not tracing.enabled:
        return
    for module in ("opentelemetry.trace", "opentelemetry.sdk.trace", *_NEEDS[tracing.exporter]):
        if not _installed(module):
            raise ConfigError(
                f"[tracing] enabled with exporter {tracing.exporter!r} needs {module}, which is not installed: "
                "pip install 'statusq[otel]'"
            )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or blocked in sys.modules
        return False


def producer_middleware(config: Config) -> list[Middleware]:
    """What a process that enqueues adds: injection only, through the application's provider."""
    if not config.tracing.enabled:
        return []
    check(config)
    from statusq.tracing.middleware import TracingMiddleware  # noqa: PLC0415 - optional extra

    return [TracingMiddleware(config.queue.subsystem)]


def worker_middleware(config: Config) -> list[Middleware]:
    """What a worker adds: its own provider (after the fork, so the export thread is its own),
    and a hook that flushes the spans still batched when the worker stops."""
    if not config.tracing.enabled:
        return []
    check(config)
    from opentelemetry import trace  # noqa: PLC0415 - optional extra

    provider = _provider(config.tracing)
    trace.set_tracer_provider(provider)  # global: the handlers' own instrumentations use it too
    return [_FlushSpans(provider)]


class _FlushSpans(Middleware):
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def before_worker_shutdown(self) -> None:
        self.provider.shutdown()


def _provider(tracing: TracingConfig) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - optional extra
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    resource = Resource.create(
        {"service.name": tracing.service_name, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(tracing.sample_ratio)))
    exporter = _exporter(tracing)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(tracing: TracingConfig) -> SpanExporter | None:
    endpoint = tracing.endpoint
    if tracing.exporter == "otlp-http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
            endpoint = endpoint.rstrip("/") + "/v1/traces"  # the base address, as for the other exporters
        return OTLPSpanExporter(endpoint=endpoint)
    if tracing.exporter == "otlp-grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter as GrpcSpanExporter,
        )

        insecure = endpoint.startswith("http://") if endpoint else None
        return GrpcSpanExporter(endpoint=endpoint, insecure=insecure)
    if tracing.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        return ConsoleSpanExporter()
    return None
