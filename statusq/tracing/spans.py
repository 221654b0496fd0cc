"""The item's span, made as the SDK's ``Tracer.start_span`` makes it but without its generality.

Why: every traced item pays for its span, and through the SDK's calls more than half of that went
to work a queue item's span does not need: each of its eight attributes run through
``BoundedAttributes``' checks (written for values from anywhere: some 6,700 instructions an
attribute), a dozen keyword arguments passed down three calls, the parent found again in the
context statusq has just made (twice, by the sampler), and at the end a ``ReadableSpan`` copy
made for span processors even when there are none.  Measured with callgrind on the SDK's
provider with no span processor: ``start_span`` with the item's attributes, one
``set_attribute`` and ``end``, 170,600 instructions; the same span made here, 61,300.

What it keeps, so the span is the one the SDK makes (tests/unit/test_tracing_spans.py compares
the two, field by field and as exported, with and without a span processor): the tracer's
enabled flag, its id generator, its sampler's decision (the SDK's own samplers' taken here as
their ``should_sample`` takes it; any other sampler is asked, and the attributes or trace state
it returns are obeyed), its internal metrics, its span processors' ``on_start`` with the parent
context and ``on_end``, the span limits.  The span is the SDK's own class: a handler sets
attributes on it, adds events, starts child spans under it.  What it skips is the checking of
values statusq itself made (strings and integers, new keys, room for them; anything else, or a
value-length limit, goes through the SDK's checks).

Used only where the SDK's internals are the ones this was written against (opentelemetry-sdk
1.45): the tracer exactly the SDK's ``Tracer`` (not the API's no-op or proxy tracer, not a
subclass), a span made by the SDK's constructor having exactly the fields set here; otherwise,
and when the SDK is not installed, :class:`ItemSpans` makes the span through the API's calls.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import AttributeValue

from statusq.tracing.w3c import FLAGS

_UNSET = Status(StatusCode.UNSET)
_CLEAN_TYPES = (str, int)  # bool is an int: as the SDK, kept as it is
_new = object.__new__
_Lock = threading.Lock
_CONSUMER = SpanKind.CONSUMER


class ItemSpans:
    """Starts, adds to and ends the items' spans through the API's calls, for any tracer;
    :func:`item_spans` gives the SDK's tracer :class:`_SdkSpans` instead."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def start(
        self,
        name: str,
        context: otel_context.Context,
        parent: SpanContext | None,
        attributes: dict[str, AttributeValue],
        links: Sequence[Link],
    ) -> trace.Span:
        """The item's CONSUMER span: ``context`` is the one it starts in (the sampler's and the
        span processors' argument), ``parent`` the producer's span context in it (None: none)."""
        return self.tracer.start_span(name, context, SpanKind.CONSUMER, attributes, links or None)

    def set_attributes(self, span: trace.Span, attributes: dict[str, AttributeValue]) -> None:
        span.set_attributes(attributes)

    def end(self, span: trace.Span) -> None:
        span.end()


def item_spans(tracer: trace.Tracer) -> ItemSpans:
    """The fastest way to make an item's spans with this tracer that makes the same spans."""
    try:
        from opentelemetry.attributes import BoundedAttributes  # noqa: PLC0415 - optional extra
        from opentelemetry.sdk.trace import Tracer, _Span  # noqa: PLC0415
    except ImportError:
        return ItemSpans(tracer)
    if type(tracer) is not Tracer or not all(hasattr(tracer, field) for field in _TRACER_FIELDS):
        return ItemSpans(tracer)
    if not hasattr(TraceFlags, "RANDOM_TRACE_ID") or not _same_fields(tracer, _Span, BoundedAttributes):
        return ItemSpans(tracer)
    return _SdkSpans(tracer)


#: A span's fields as the SDK's constructor sets them, and those of its attributes' container:
#: what :class:`_SdkSpans` sets by hand.
_SPAN_FIELDS = frozenset(
    {
        "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent",
        "_start_time", "_end_time", "_attributes", "_events", "_links", "_resource", "_status",
        "_sampler", "_trace_config", "_record_exception", "_set_status_on_exception",
        "_span_processor", "_limits", "_lock", "_record_end_metrics",
    }
)  # fmt: skip
_ATTRIBUTES_FIELDS = frozenset({"_dict", "maxlen", "dropped", "max_value_len", "_lock", "_immutable"})
_TRACER_FIELDS = (
    "_tracer_config", "id_generator", "sampler", "_tracer_metrics", "_span_limits", "instrumentation_info",
    "_instrumentation_scope", "resource", "span_processor",
)  # fmt: skip


class _SdkSpans(ItemSpans):
    """The SDK's steps, in its order (opentelemetry-sdk 1.45: ``Tracer.start_span``, ``Span``'s
    constructor, ``set_attributes``, ``end``), less their generality."""

    def __init__(self, tracer: trace.Tracer) -> None:
        super().__init__(tracer)
        from opentelemetry.attributes import BoundedAttributes  # noqa: PLC0415 - optional extra
        from opentelemetry.sdk.trace import _Span, sampling  # noqa: PLC0415
        from opentelemetry.sdk.util import BoundedList  # noqa: PLC0415

        self.sdk: Any = tracer  # the SDK's fields, not the API's
        self.sampling = sampling
        self.decides = _knows_samplers(sampling)
        self.span_class = _Span
        self.attributes_class = BoundedAttributes
        self.list_class = BoundedList

    def start(
        self,
        name: str,
        context: otel_context.Context,
        parent: SpanContext | None,
        attributes: dict[str, AttributeValue],
        links: Sequence[Link],
    ) -> trace.Span:
        sdk = self.sdk
        if not sdk._tracer_config.is_enabled:
            return NonRecordingSpan(INVALID_SPAN_CONTEXT if parent is None else parent)
        ids = sdk.id_generator
        trace_id = ids.generate_trace_id() if parent is None else parent.trace_id
        decided = self._decide(sdk.sampler, parent, trace_id)
        if decided is None:
            sampled = sdk.sampler.should_sample(context, trace_id, name, _CONSUMER, attributes, links)
            decision, trace_state, given = sampled.decision, sampled.trace_state, sampled.attributes
        else:
            decision, trace_state = decided
            given = attributes
        flags = TraceFlags.SAMPLED if decision.is_sampled() else TraceFlags.DEFAULT
        if ids.is_trace_id_random() if parent is None else parent.trace_flags.random_trace_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        span_context = SpanContext(trace_id, ids.generate_span_id(), False, FLAGS[flags], trace_state)
        record_end_metrics = sdk._tracer_metrics.start_span(parent, decision)
        if not decision.is_recording():
            return NonRecordingSpan(span_context)
        limits = sdk._span_limits
        kept = self._kept(limits, given, attributes)
        span = _new(self.span_class)
        span._name = name
        span._context = span_context
        span._kind = _CONSUMER
        span._instrumentation_info = sdk.instrumentation_info
        span._instrumentation_scope = sdk._instrumentation_scope
        span._parent = parent
        span._end_time = None
        span._resource = sdk.resource
        span._status = _UNSET
        span._sampler = sdk.sampler
        span._trace_config = None
        span._record_exception = True
        span._set_status_on_exception = True
        span._span_processor = processor = sdk.span_processor
        span._limits = limits
        span._lock = _Lock()
        span._attributes = kept
        span._events = self.list_class(limits.max_events)
        span._links = span._new_links(links)
        span._record_end_metrics = record_end_metrics
        span._start_time = time_ns()
        processor.on_start(span, parent_context=context)
        return span

    def _kept(self, limits: Any, given: Mapping[str, AttributeValue], ours: dict[str, AttributeValue]) -> Any:
        """The span's attributes' container: the SDK's, filled without its checks when they would
        change nothing."""
        values = _clean(given, ours, limits.max_span_attributes, limits.max_span_attribute_length)
        if values is None:  # what the SDK's checks would change: let them
            return self.attributes_class(
                limits.max_span_attributes,
                given,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        kept = _new(self.attributes_class)
        kept._dict = values
        kept.maxlen = limits.max_span_attributes
        kept.dropped = 0
        kept.max_value_len = limits.max_span_attribute_length
        kept._lock = _Lock()
        kept._immutable = False
        return kept

    def _decide(self, sampler: Any, parent: SpanContext | None, trace_id: int) -> tuple[Any, TraceState | None] | None:
        """The decision and trace state of the SDK's own samplers (parent-based, always on or off,
        trace id ratio), as their ``should_sample`` makes them, which also finds the parent in the
        context twice and wraps the attributes (12,000 to 20,000 instructions an item); None for
        any other sampler, which is asked."""
        sampling = self.sampling
        if not self.decides:
            return None
        if type(sampler).should_sample is sampling.ParentBased.should_sample:
            if parent is None or not parent.is_valid:
                sampler = sampler._root
            elif parent.is_remote:
                sampled = parent.trace_flags.sampled
                sampler = sampler._remote_parent_sampled if sampled else sampler._remote_parent_not_sampled
            else:
                sampler = (
                    sampler._local_parent_sampled if parent.trace_flags.sampled else sampler._local_parent_not_sampled
                )
        should_sample = type(sampler).should_sample
        if should_sample is sampling.StaticSampler.should_sample:
            decision = sampler._decision
        elif should_sample is sampling.TraceIdRatioBased.should_sample:
            keep = trace_id & sampler.TRACE_ID_LIMIT < sampler.bound
            decision = sampling.Decision.RECORD_AND_SAMPLE if keep else sampling.Decision.DROP
        else:
            return None
        return decision, parent.trace_state if parent is not None and parent.is_valid else None

    def set_attributes(self, span: trace.Span, attributes: dict[str, AttributeValue]) -> None:
        # New keys with clean values, room for them, no length limit, span not ended: what the
        # SDK's set_attributes would store unchanged, stored under the same two locks.
        if type(span) is self.span_class:
            sdk_span: Any = span
            kept = sdk_span._attributes
            with sdk_span._lock, kept._lock:
                stored = kept._dict
                if (
                    sdk_span._end_time is None
                    and not kept._immutable
                    and kept.max_value_len is None
                    and (kept.maxlen is None or len(stored) + len(attributes) <= kept.maxlen)
                    and stored.keys().isdisjoint(attributes)
                    and all(isinstance(value, _CLEAN_TYPES) for value in attributes.values())
                ):
                    stored.update(attributes)
                    return
        span.set_attributes(attributes)

    def end(self, span: trace.Span) -> None:
        # With no span processor (nothing exported), the SDK's end still copies the span into a
        # ReadableSpan for none of them: 11,500 instructions an item.
        if type(span) is not self.span_class:
            span.end()
            return
        sdk_span: Any = span
        with sdk_span._lock:
            ending = sdk_span._start_time is not None and sdk_span._end_time is None
            if ending:
                sdk_span._end_time = time_ns()
                sdk_span._attributes._immutable = True
        if not ending:
            span.end()  # the SDK's error or warning
            return
        if sdk_span._record_end_metrics:
            sdk_span._record_end_metrics()
        processor = sdk_span._span_processor
        processor._on_ending(span)
        if getattr(processor, "_span_processors", True):
            processor.on_end(sdk_span._readable_span())


def _clean(
    sampled: Mapping[str, AttributeValue], ours: dict[str, AttributeValue], most: int | None, longest: int | None
) -> dict[str, AttributeValue] | None:
    """The span's attributes as the SDK's checks would keep them, when they would keep them as
    they are: the sampler's are ours (it may return others), every value a str or an int, no
    value-length limit, no more of them than the span may hold.  None: let the checks run."""
    if longest is not None or (most is not None and most < len(ours)) or sampled != ours:
        return None
    for value in ours.values():
        if not isinstance(value, _CLEAN_TYPES):
            return None
    return dict(ours)


def _knows_samplers(sampling: Any) -> bool:
    """Whether the SDK's samplers have the fields :meth:`_SdkSpans._decide` reads."""
    parent_based = sampling.ParentBased(sampling.ALWAYS_ON)
    fields = ("_root", "_remote_parent_sampled", "_remote_parent_not_sampled", "_local_parent_sampled")
    return (
        all(hasattr(parent_based, field) for field in (*fields, "_local_parent_not_sampled"))
        and hasattr(sampling.ALWAYS_ON, "_decision")
        and hasattr(sampling.TraceIdRatioBased(0.5), "bound")
        and hasattr(sampling.TraceIdRatioBased, "TRACE_ID_LIMIT")
    )


def _same_fields(tracer: Any, span_class: Any, attributes_class: Any) -> bool:
    """Whether the SDK's constructors set exactly the fields set by hand here (an SDK that adds or
    renames one would get spans missing it)."""
    probe = span_class(
        "probe",
        SpanContext(1, 1, is_remote=False),
        resource=tracer.resource,
        attributes={"a": "b"},
        limits=tracer._span_limits,
    )
    return set(vars(probe)) == _SPAN_FIELDS and set(vars(probe._attributes)) == _ATTRIBUTES_FIELDS
