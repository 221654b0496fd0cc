"""statusq.tracing.spans: the item's span made by hand is the one ``Tracer.start_span`` makes.

Each case starts the same span both ways on providers that differ only in their exporter, with
ids from a counter so the two get the same ones, and compares the spans' fields and what is
exported (the times aside).  An SDK upgrade that changes ``start_span`` or the span's fields
fails here, or makes :func:`statusq.tracing.spans.starter` fall back to ``start_span``."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from statusq.tracing.spans import starter

ATTRIBUTES: dict[str, AttributeValue] = {
    "messaging.system": "statusq",
    "messaging.destination.name": "push",
    "statusq.attempt": 2,
    "statusq.backend": "memory",
}
REMOTE = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("v", "1")]))
UNSAMPLED = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
PREVIOUS = [Link(SpanContext(0x123, 0x456, is_remote=True), {"statusq.link": "previous_attempt"})]


class Counting(IdGenerator):
    """The same ids for both providers of a case, in the same order."""

    def __init__(self) -> None:
        self.next = itertools.count(1)

    def generate_span_id(self) -> int:
        return next(self.next)

    def generate_trace_id(self) -> int:
        return next(self.next) << 64


class Renaming(Sampler):
    """A sampler that gives the span attributes of its own and a trace state."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE, {"sampled.by": name}, TraceState([("s", "x")]))

    def get_description(self) -> str:
        return "Renaming"


def made(
    by_hand: bool, sampler: Sampler, parent: SpanContext | None, links: Sequence[Link], limits: SpanLimits | None
) -> tuple[trace.Span, list[ReadableSpan]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=Counting(), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("statusq")
    context = Context() if parent is None else trace.set_span_in_context(NonRecordingSpan(parent), Context())
    if by_hand:
        span = starter(tracer)("process push", context, parent, dict(ATTRIBUTES), links)
    else:
        span = tracer.start_span("process push", context, SpanKind.CONSUMER, dict(ATTRIBUTES), links or None)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:  # what a handler may do with the span current
        trace.get_current_span().set_attribute("handler.said", "hello")
        tracer.start_span("child").end()
    finally:
        otel_context.detach(token)
    span.add_event("retry", {"statusq.delay": 5.0})
    span.end()
    return span, list(exporter.get_finished_spans())


def fields(span: trace.Span) -> dict[str, Any]:
    """A span's fields, its lock and times aside, its containers as their contents."""
    if not isinstance(span, ReadableSpan):
        return {"non-recording": span.get_span_context()}
    skip = {"_lock", "_start_time", "_end_time", "_span_processor", "_record_end_metrics"}
    out: dict[str, Any] = {k: v for k, v in vars(span).items() if k not in skip}
    out["_attributes"] = (dict(span._attributes or {}), span.dropped_attributes, vars(span._attributes).keys())
    out["_events"] = [(e.name, dict(e.attributes or {})) for e in span.events]
    out["_links"] = [(link.context, dict(link.attributes or {})) for link in span.links]
    out["_status"] = (span.status.status_code, span.status.description)
    out["_limits"] = vars(span._limits)  # type: ignore[attr-defined]
    return out


def exported(spans: list[ReadableSpan]) -> list[dict[str, Any]]:
    out = []
    for span in spans:
        data = json.loads(span.to_json())
        for key in ("start_time", "end_time"):
            data.pop(key)
        for event in data["events"]:
            event.pop("timestamp")
        out.append(data)
    return out


CASES = {
    "no parent": (ParentBased(ALWAYS_ON), None, [], None),
    "a sampled remote parent with a trace state": (ParentBased(ALWAYS_ON), REMOTE, [], None),
    "an unsampled remote parent": (ParentBased(ALWAYS_ON), UNSAMPLED, [], None),
    "a link to the previous attempt": (ParentBased(ALWAYS_ON), REMOTE, PREVIOUS, None),
    "a ratio that drops the item": (ParentBased(TraceIdRatioBased(0.0)), None, [], None),
    "a ratio that keeps it": (ParentBased(TraceIdRatioBased(1.0)), None, [], None),
    "a sampler with attributes of its own": (Renaming(), REMOTE, [], None),
    "a value-length limit": (ALWAYS_ON, None, [], SpanLimits(max_span_attribute_length=3)),
    "fewer attributes allowed than the item has": (ALWAYS_ON, None, [], SpanLimits(max_span_attributes=2)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_span_made_by_hand_is_the_span_start_span_makes(case: str) -> None:
    sampler, parent, links, limits = CASES[case]
    by_hand, by_hand_exported = made(True, sampler, parent, links, limits)
    by_sdk, by_sdk_exported = made(False, sampler, parent, links, limits)
    assert type(by_hand) is type(by_sdk)
    assert fields(by_hand) == fields(by_sdk)
    assert exported(by_hand_exported) == exported(by_sdk_exported)


def test_the_sdks_tracer_gets_the_span_made_by_hand() -> None:
    tracer = TracerProvider().get_tracer("statusq")
    assert starter(tracer).__qualname__.startswith("_sdk_starter"), "the SDK's internals are not the ones expected"


def test_another_tracer_gets_its_own_start_span() -> None:
    tracer = trace.NoOpTracer()
    span = starter(tracer)("process push", Context(), REMOTE, dict(ATTRIBUTES), [])
    assert not span.is_recording()
