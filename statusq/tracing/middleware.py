"""Trace context across the queue: injected at enqueue, continued by the worker's span.

Built on the OpenTelemetry *API* only, as a library should be: which spans are kept and where
they go is the tracer provider's business (the application's in a producer, the one
:mod:`statusq.tracing.setup` installs in a worker).  With no provider installed, the API's
no-op tracer makes every call here nearly free.
"""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from statusq.item import Delivery, Message
from statusq.middleware import Middleware
from statusq.outcome import Outcome, Result

#: Set on a delivery's headers while its attempt runs: the attempt's own span, in traceparent form,
#: so that a retry (which keeps the headers) links its span to the attempt before it.  Not named
#: ``statusq-*``: those are statusq's wire headers, which a STOMP consumer hides from handlers.
PREVIOUS_SPAN = "x-statusq-previous-span"

_TRACEPARENT = "traceparent"

#: The span of the item in hand and the trace context that was current before it.
_current: contextvars.ContextVar[tuple[trace.Span, otel_context.Context] | None] = contextvars.ContextVar(
    "statusq_item_span", default=None
)


def _traceparent(span_context: trace.SpanContext) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{int(span_context.trace_flags):02x}"


def _link_to_previous(headers: dict[str, str]) -> list[Link]:
    previous = headers.get(PREVIOUS_SPAN)
    if not previous:
        return []
    carried = trace.get_current_span(propagate.extract({_TRACEPARENT: previous})).get_span_context()
    return [Link(carried, {"statusq.link": "previous_attempt"})] if carried.is_valid else []


class TracingMiddleware(Middleware):
    """``before_enqueue`` injects the current context (W3C ``traceparent``/``tracestate``) into
    the item's headers; ``before_item`` starts the handler's ``CONSUMER`` span as its child (a new
    trace for a foreign producer's item that carries none) and makes it current, so a handler's
    own instrumented calls nest under it; ``after_item`` records the outcome and ends it."""

    def __init__(self, backend: str, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.backend = backend
        self.tracer = trace.get_tracer("statusq", tracer_provider=tracer_provider)

    def before_enqueue(self, message: Message) -> None:
        propagate.inject(message.headers)

    def before_item(self, delivery: Delivery) -> None:
        headers = delivery.headers
        parent = propagate.extract(headers) if _TRACEPARENT in headers else otel_context.Context()
        attributes: dict[str, Any] = {
            "messaging.system": "statusq",
            "messaging.operation.type": "process",
            "messaging.destination.name": delivery.transport,
            "messaging.message.id": delivery.id,
            "statusq.site": delivery.site,
            "statusq.transport": delivery.transport,
            "statusq.attempt": delivery.attempt,
            "statusq.backend": self.backend,
        }
        span = self.tracer.start_span(
            f"process {delivery.transport}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=_link_to_previous(headers),
        )
        before = otel_context.get_current()
        otel_context.attach(trace.set_span_in_context(span, before))
        _current.set((span, before))
        if span.get_span_context().is_valid:
            headers[PREVIOUS_SPAN] = _traceparent(span.get_span_context())

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
            span.set_attribute("statusq.outcome", result.outcome.value)
        else:
            span.set_attributes({"statusq.outcome": result.outcome.value, "statusq.failure": result.kind.value})
        if result.error is not None:
            span.record_exception(result.error)
        if result.outcome is Outcome.RETRY:
            span.add_event("retry", {"statusq.reason": result.reason or "", "statusq.delay": result.delay})
        elif result.outcome is Outcome.DEAD:
            span.add_event("dead-lettered", {"statusq.reason": result.reason or ""})
            span.set_status(Status(StatusCode.ERROR, result.reason or "dead-lettered"))
        span.end()
