"""statusq.tracing.w3c: the traceparent/tracestate headers written and read by hand, held to the
W3C Trace Context rules and to the API's own propagator, which they replace on the item path."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from statusq.tracing.w3c import format_traceparent, inject, parse_traceparent

TRACE = "0af7651916cd43dd8448eb211c80319c"
SPAN = "b7ad6b7169203331"
EXAMPLE = f"00-{TRACE}-{SPAN}-01"  # the specification's own example

#: The one header the API's propagator takes and this module refuses: its regular expression's ``$``
#: matches before a final newline; a newline is in no valid header value.
NEWLINE_AFTER = EXAMPLE + "\n"

VALID = [
    EXAMPLE,
    f"00-{TRACE}-{SPAN}-00",  # not sampled
    f"00-{TRACE}-{SPAN}-03",  # sampled, random trace id (level 2)
    f"00-{TRACE}-{SPAN}-ff",  # unknown flags are kept as they came
    f"01-{TRACE}-{SPAN}-01",  # a later version, no more fields
    f"cc-{TRACE}-{SPAN}-01-what-the-future-adds",  # a later version's fields are ignored
    f" \t{EXAMPLE} ",  # optional whitespace around
]

INVALID = [
    "",
    "garbage",
    f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
    f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has four fields exactly
    f"00-{TRACE}-{SPAN}-01-",
    f"01-{TRACE}-{SPAN}-01x",  # a later version's next field starts with "-"
    f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
    f"00-{TRACE.upper()}-{SPAN}-01",  # uppercase hex is refused
    f"00-{TRACE}-{SPAN.upper()}-01",
    f"0A-{TRACE}-{SPAN}-01",
    f"00-{TRACE}-{SPAN}-0A",
    f"00-{TRACE[:-1]}-{SPAN}-01",  # a field too short
    f"00-{TRACE}0-{SPAN}-01",  # a field too long
    f"00-{TRACE}-{SPAN}-1",
    f"0-{TRACE}-{SPAN}-01",
    f"00_{TRACE}_{SPAN}_01",
    f"00-{TRACE[:-1]}g-{SPAN}-01",  # not hex
    NEWLINE_AFTER,
    f"cc-{TRACE}-{SPAN}-01-" + "x" * 512,  # over the 512 characters read
]


@pytest.mark.parametrize("header", VALID)
def test_a_valid_traceparent_names_a_remote_span_context(header: str) -> None:
    parsed = parse_traceparent(header)
    assert parsed is not None
    assert parsed.trace_id == int(TRACE, 16)
    assert parsed.span_id == int(SPAN, 16)
    assert parsed.trace_flags == int(header.strip()[53:55], 16)
    assert parsed.is_remote and parsed.is_valid


@pytest.mark.parametrize("header", INVALID)
def test_an_invalid_traceparent_names_none(header: str) -> None:
    assert parse_traceparent(header) is None


@pytest.mark.parametrize("header", [h for h in VALID + INVALID if h != NEWLINE_AFTER])
def test_parsing_agrees_with_the_api_propagator(header: str) -> None:
    carried = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
    theirs = carried.get_span_context()
    ours = parse_traceparent(header)
    if not theirs.is_valid:
        assert ours is None
    else:
        assert ours is not None
        assert (ours.trace_id, ours.span_id, ours.trace_flags, ours.is_remote) == (
            theirs.trace_id,
            theirs.span_id,
            theirs.trace_flags,
            theirs.is_remote,
        )


def test_format_is_version_00_in_lowercase_hex_and_reads_back() -> None:
    context = SpanContext(int(TRACE, 16), int(SPAN, 16), is_remote=False, trace_flags=TraceFlags(1))
    assert format_traceparent(context) == EXAMPLE
    small = SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(0))
    assert format_traceparent(small) == f"00-{1:032x}-{2:016x}-00"
    back = parse_traceparent(format_traceparent(small))
    assert back is not None and (back.trace_id, back.span_id, back.trace_flags) == (1, 2, 0)


def test_tracestate_is_carried_when_present_and_dropped_when_invalid() -> None:
    parsed = parse_traceparent(EXAMPLE, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    assert parsed is not None
    assert list(parsed.trace_state.items()) == [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
    broken = parse_traceparent(EXAMPLE, "no equals sign here")
    assert broken is not None and len(broken.trace_state) == 0  # the trace goes on, its state does not
    assert parse_traceparent(EXAMPLE) is not None


def test_inject_writes_tracestate_only_when_the_context_has_one() -> None:
    plain = SpanContext(int(TRACE, 16), int(SPAN, 16), is_remote=False, trace_flags=TraceFlags(1))
    headers: dict[str, str] = {}
    inject(plain, headers)
    assert headers == {"traceparent": EXAMPLE}
    stated = SpanContext(
        int(TRACE, 16), int(SPAN, 16), False, TraceFlags(1), TraceState([("rojo", "00f067aa0ba902b7")])
    )
    inject(stated, headers)
    assert headers == {"traceparent": EXAMPLE, "tracestate": "rojo=00f067aa0ba902b7"}
    # And what the API's propagator reads from them is the same context
    carried = trace.get_current_span(TraceContextTextMapPropagator().extract(headers)).get_span_context()
    assert (carried.trace_id, carried.span_id, carried.trace_state) == (
        int(TRACE, 16),
        int(SPAN, 16),
        stated.trace_state,
    )
