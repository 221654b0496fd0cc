"""Trace context across the queue: injected at enqueue, continued by the worker's span.

Built on the OpenTelemetry *API*, as a library should be: which spans are kept and where they go
is the tracer provider's business (the application's in a producer, the one
:mod:`statusq.tracing.setup` installs in a worker).  With no provider installed, the API's
no-op tracer makes every call here nearly free.  (:mod:`statusq.tracing.spans` reaches into the
SDK, for speed, only when the tracer is the SDK's own.)

Every item pays for what is here, so it does no more than the SDK's span needs (measured with
``bench/tracing_cost.py``; docs/observability.md): the W3C headers are written and read by
:mod:`statusq.tracing.w3c`, not through the global propagator; the attributes known at the start
go to the span in one dict; the span is started, given the outcome and ended by
:mod:`statusq.tracing.spans` (on the SDK's tracer: the SDK's span, made without ``start_span``'s
generality); it is made current by attaching a context, not through ``use_span``'s context
manager.
"""

from __future__ import annotations

import contextvars

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode

from statusq.item import Delivery, Message
from statusq.middleware import Middleware
from statusq.outcome import Outcome, Result
from statusq.tracing.spans import item_spans
from statusq.tracing.w3c import TRACEPARENT, TRACESTATE, format_traceparent, inject, parse_traceparent

#: Set on a delivery's headers while its attempt runs: the attempt's own span, in traceparent form,
#: so that a retry (which keeps the headers) links its span to the attempt before it.  Not named
#: ``statusq-*``: those are statusq's wire headers, which a STOMP consumer hides from handlers.
PREVIOUS_SPAN = "x-statusq-previous-span"

#: The parent of an item that carries no trace context: none, whatever is current in the worker.
_NO_PARENT = otel_context.Context()
_PREVIOUS_ATTEMPT = {"statusq.link": "previous_attempt"}

#: The span of the item in hand and the trace context that was current before it.
_current: contextvars.ContextVar[tuple[trace.Span, otel_context.Context] | None] = contextvars.ContextVar(
    "statusq_item_span", default=None
)


def _parent(headers: dict[str, str]) -> tuple[otel_context.Context, SpanContext | None]:
    """The context the item's span starts in, and the producer's span context in it (None: none)."""
    traceparent = headers.get(TRACEPARENT)
    carried = parse_traceparent(traceparent, headers.get(TRACESTATE)) if traceparent else None
    if carried is None:
        return _NO_PARENT, None
    return trace.set_span_in_context(NonRecordingSpan(carried), _NO_PARENT), carried


def _link_to_previous(headers: dict[str, str]) -> list[Link]:
    previous = headers.get(PREVIOUS_SPAN)
    carried = parse_traceparent(previous) if previous else None
    return [] if carried is None else [Link(carried, _PREVIOUS_ATTEMPT)]


class TracingMiddleware(Middleware):
    """``before_enqueue`` writes the current span's context (W3C ``traceparent``/``tracestate``)
    into the item's headers; ``before_item`` starts the handler's ``CONSUMER`` span as its child
    (a new trace for an item that carries none) and makes it current, so a handler's own
    instrumented calls nest under it; ``after_item`` records the outcome and ends it."""

    def __init__(self, backend: str, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.backend = backend
        self.tracer_provider = tracer_provider
        self._use(trace.get_tracer("statusq", tracer_provider=tracer_provider))

    def _use(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self.spans = item_spans(tracer)

    def after_worker_boot(self) -> None:
        # Made before the worker set up its provider (the plugins are loaded first), the tracer is
        # the API's proxy, which forwards every span to the real one; take the real one now.
        if self.tracer_provider is None:
            self._use(trace.get_tracer("statusq"))

    def before_enqueue(self, message: Message) -> None:
        # No valid span current, nothing written: the worker starts a new trace for the item.  A
        # valid span that is not recording (the application's sampler said no) is written all
        # the same, so the worker follows the producer's decision instead of sampling anew.
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            inject(span_context, message.headers)

    def before_item(self, delivery: Delivery) -> None:
        headers = delivery.headers
        transport = delivery.transport
        context, parent = _parent(headers)
        span = self.spans.start(
            f"process {transport}",
            context,
            parent,
            {
                "messaging.system": "statusq",
                "messaging.operation.type": "process",
                "messaging.destination.name": transport,
                "messaging.message.id": delivery.id,
                "statusq.site": delivery.site,
                "statusq.transport": transport,
                "statusq.attempt": delivery.attempt,
                "statusq.backend": self.backend,
            },
            _link_to_previous(headers) if PREVIOUS_SPAN in headers else (),
        )
        before = otel_context.get_current()
        otel_context.attach(trace.set_span_in_context(span, before))
        _current.set((span, before))

    def before_resend(self, delivery: Delivery, result: Result) -> None:
        # Only for an item that runs again: formatting the span's context cost every item ~2 µs,
        # an eighth of what tracing costs one
        held = _current.get()
        span_context = held[0].get_span_context() if held is not None else None
        if span_context is not None and span_context.is_valid:
            delivery.headers[PREVIOUS_SPAN] = format_traceparent(span_context)

    def after_item(self, delivery: Delivery, result: Result) -> None:
        held = _current.get()
        if held is None:
            return
        span, before = held
        _current.set(None)
        # Restored by value, not detached by token: with items in hand concurrently this hook runs
        # in a copy of the item's context, where the token of before_item cannot be reset.
        otel_context.attach(before)
        if result.kind is None:
            self.spans.set_attributes(span, {"statusq.outcome": result.outcome.value})
        else:
            self.spans.set_attributes(
                span, {"statusq.outcome": result.outcome.value, "statusq.failure": result.kind.value}
            )
        if result.error is not None:
            span.record_exception(result.error)
        if result.outcome is Outcome.RETRY:
            span.add_event("retry", {"statusq.reason": result.reason or "", "statusq.delay": result.delay})
        elif result.outcome is Outcome.DEAD:
            span.add_event("dead-lettered", {"statusq.reason": result.reason or ""})
            span.set_status(Status(StatusCode.ERROR, result.reason or "dead-lettered"))
        self.spans.end(span)
