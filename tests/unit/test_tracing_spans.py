"""statusq.tracing.spans: the item's span made by hand is the one ``Tracer.start_span`` makes.

Each case starts the same span both ways on providers that differ only in their exporter, with
ids from a counter so the two get the same ones, and compares the spans' fields and what is
exported (the times aside).  An SDK upgrade that changes ``start_span`` or the span's fields
fails here, or makes :func:`statusq.tracing.spans.item_spans` fall back to the API's calls."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider, _disable_tracer_configurator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.util.types import AttributeValue

from statusq.tracing.middleware import TracingMiddleware
from statusq.tracing.spans import ItemSpans, item_spans

ATTRIBUTES: dict[str, AttributeValue] = {
    "messaging.system": "statusq",
    "messaging.destination.name": "push",
    "statusq.attempt": 2,
    "statusq.backend": "memory",
}
REMOTE = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([("v", "1")]))
LOCAL = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(1))
HIGH = SpanContext((1 << 64) - 1, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))  # over any ratio's bound
UNSAMPLED = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
#: The sampler, the producer's span context, the links, the limits, the outcome's attributes.
Case = tuple[Sampler, SpanContext | None, Sequence[Link], SpanLimits | None, dict[str, AttributeValue]]
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


def made(by_hand: bool, case: Case, exporting: bool = True) -> tuple[trace.Span, list[ReadableSpan]]:
    """The item's span, as TracingMiddleware makes it: started, given to a handler, given the
    outcome, ended."""
    sampler, parent, links, limits, outcome = case
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, id_generator=Counting(), span_limits=limits)
    if exporting:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("statusq")
    spans = item_spans(tracer) if by_hand else ItemSpans(tracer)
    assert (type(spans) is not ItemSpans) is by_hand, "the SDK's internals are not the ones expected"
    context = Context() if parent is None else trace.set_span_in_context(NonRecordingSpan(parent), Context())
    span = spans.start("process push", context, parent, dict(ATTRIBUTES), links)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:  # what a handler may do with the span current
        trace.get_current_span().set_attribute("handler.said", "hello")
        tracer.start_span("child").end()
    finally:
        otel_context.detach(token)
    spans.set_attributes(span, outcome)
    span.add_event("retry", {"statusq.delay": 5.0})
    spans.end(span)
    return span, list(exporter.get_finished_spans())


def fields(span: trace.Span) -> dict[str, Any]:
    """A span's fields, its lock and times aside, its containers as their contents."""
    if not isinstance(span, ReadableSpan):
        return {"non-recording": span.get_span_context()}
    skip = {"_lock", "_start_time", "_end_time", "_span_processor", "_record_end_metrics"}
    out: dict[str, Any] = {k: v for k, v in vars(span).items() if k not in skip}
    kept = span._attributes
    out["_attributes"] = (dict(kept or {}), {k: v for k, v in vars(kept).items() if k not in ("_dict", "_lock")})
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


DONE: dict[str, AttributeValue] = {"statusq.outcome": "done"}
FAILED: dict[str, AttributeValue] = {"statusq.outcome": "retry", "statusq.failure": "handler_error"}
ON = ParentBased(ALWAYS_ON)
CASES: dict[str, Case] = {
    "no parent": (ON, None, [], None, DONE),
    "a sampled remote parent with a trace state": (ON, REMOTE, [], None, DONE),
    "an unsampled remote parent": (ON, UNSAMPLED, [], None, DONE),
    "a link to the previous attempt": (ON, REMOTE, PREVIOUS, None, FAILED),
    "a ratio that drops the item": (ParentBased(TraceIdRatioBased(0.0)), None, [], None, DONE),
    "a ratio that keeps it": (ParentBased(TraceIdRatioBased(1.0)), None, [], None, DONE),
    "a sampler with attributes of its own": (Renaming(), REMOTE, [], None, DONE),
    "parent-based, with a sampler of its own for a sampled parent": (
        ParentBased(ALWAYS_OFF, remote_parent_sampled=Renaming()),
        REMOTE,
        [],
        None,
        DONE,
    ),
    "always off": (ALWAYS_OFF, None, [], None, DONE),
    "a ratio on the producer's trace id, kept": (TraceIdRatioBased(0.5), REMOTE, [], None, DONE),
    "a ratio on the producer's trace id, dropped": (TraceIdRatioBased(0.5), HIGH, [], None, DONE),
    "a local parent": (ParentBased(ALWAYS_OFF), LOCAL, [], None, DONE),
    "a remote parent": (ParentBased(ALWAYS_OFF), REMOTE, [], None, DONE),
    "a value-length limit": (ALWAYS_ON, None, [], SpanLimits(max_span_attribute_length=3), FAILED),
    "fewer attributes allowed than the item has": (ALWAYS_ON, None, [], SpanLimits(max_span_attributes=2), DONE),
    "room for the start's attributes, not the outcome's": (
        ALWAYS_ON,
        None,
        [],
        SpanLimits(max_span_attributes=5),
        FAILED,
    ),
    "an outcome the handler set already": (ON, None, [], None, {"handler.said": "bye", "statusq.outcome": "done"}),
    "an outcome not a str or an int": (ON, None, [], None, {"statusq.outcome": 1.5}),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("exporting", [True, False], ids=["exported", "no span processor"])
def test_the_span_made_by_hand_is_the_span_start_span_makes(case: str, exporting: bool) -> None:
    by_hand, by_hand_exported = made(True, CASES[case], exporting)
    by_sdk, by_sdk_exported = made(False, CASES[case], exporting)
    assert type(by_hand) is type(by_sdk)
    assert fields(by_hand) == fields(by_sdk)
    assert exported(by_hand_exported) == exported(by_sdk_exported)
    assert len(by_hand_exported) == (2 if isinstance(by_hand, ReadableSpan) else 0) * exporting, (
        "the span and its child"
    )


@pytest.mark.parametrize("parent", [None, REMOTE], ids=["no parent", "a remote parent"])
def test_a_disabled_tracer_gives_the_same_non_recording_span(parent: SpanContext | None) -> None:
    made: list[trace.Span] = []
    for by_hand in (True, False):
        provider = TracerProvider(id_generator=Counting())
        provider._set_tracer_configurator(tracer_configurator=_disable_tracer_configurator)
        tracer = provider.get_tracer("statusq")
        spans = item_spans(tracer) if by_hand else ItemSpans(tracer)
        context = Context() if parent is None else trace.set_span_in_context(NonRecordingSpan(parent), Context())
        made.append(spans.start("process push", context, parent, dict(ATTRIBUTES), []))
    by_hand_span, by_sdk_span = made
    assert type(by_hand_span) is type(by_sdk_span) is NonRecordingSpan
    assert by_hand_span.get_span_context() == by_sdk_span.get_span_context()


def test_another_tracer_gets_the_apis_calls() -> None:
    spans = item_spans(trace.NoOpTracer())
    assert type(spans) is ItemSpans
    span = spans.start("process push", Context(), REMOTE, dict(ATTRIBUTES), [])
    assert not span.is_recording()


def test_after_the_workers_boot_its_providers_tracer_makes_the_spans_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    middleware = TracingMiddleware("memory")  # made before the worker's provider: the API's proxy
    assert type(middleware.spans) is ItemSpans
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", TracerProvider())  # what set_tracer_provider sets, undone
    middleware.after_worker_boot()
    assert type(middleware.spans) is not ItemSpans
