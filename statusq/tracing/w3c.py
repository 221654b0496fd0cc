"""The W3C Trace Context headers (``traceparent``, ``tracestate``), written and read by hand.

Why not the API's ``TraceContextTextMapPropagator``: reached through ``propagate.inject`` and
``extract`` it runs the global composite (trace context, then baggage) through a carrier getter
and setter that wrap every value in a list, and its extract costs ~4 µs an item, a fifth of what
tracing costs a worker.  A queue item is not an HTTP request: statusq carries the W3C trace
context and nothing else, so the two headers are formatted and parsed here, with the same rules
as the API's propagator (https://www.w3.org/TR/trace-context/#traceparent-header):

- ``version-traceid-parentid-flags``, each field lowercase hex (uppercase is refused);
- version ``ff`` is invalid; version ``00`` has exactly these four fields, a later version may
  append ``-``-separated fields, which are ignored;
- an all-zero trace id or parent id is invalid;
- spaces and tabs around the value are tolerated, as HTTP's optional whitespace is.
"""

from __future__ import annotations

import re

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

#: The longest header read, as the API's propagator: a longer one is ignored, not parsed.
MAX_LENGTH = 512

_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
#: Every trace flags value, made once: an int subclass made per item costs some 1,500 instructions.
FLAGS = tuple(TraceFlags(flags) for flags in range(256))


def format_traceparent(span_context: SpanContext) -> str:
    """``00-<trace id>-<span id>-<flags>`` of a valid span context."""
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


def parse_traceparent(traceparent: str, tracestate: str | None = None) -> SpanContext | None:
    """The remote span context a ``traceparent`` (and ``tracestate``) header names, or None
    when the header is not a valid one (the item then starts a trace of its own)."""
    if len(traceparent) > MAX_LENGTH:
        return None
    match = _FORMAT.fullmatch(traceparent.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    state = None
    if tracestate is not None and len(tracestate) <= MAX_LENGTH:
        state = TraceState.from_header([tracestate])  # its invalid members make it empty
    return SpanContext(int(trace_id, 16), int(span_id, 16), True, FLAGS[int(flags, 16)], state)


def inject(span_context: SpanContext, headers: dict[str, str]) -> None:
    """Write a valid span context's ``traceparent``, and its ``tracestate`` when it has one."""
    headers[TRACEPARENT] = format_traceparent(span_context)
    if span_context.trace_state:
        headers[TRACESTATE] = span_context.trace_state.to_header()
