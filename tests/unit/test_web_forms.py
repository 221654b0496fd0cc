"""The page's forms are checked as strictly as the CLI's options."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from statusq.dispatcher.status import QueueView, queue_view
from statusq.periodic import declare
from statusq.web.forms import MAX_BODY, FormError, item_id, parse_form, queue_settings, site_name
from statusq.web.pages import duration_field


def view(kind: str = "serial", **changes: Any) -> QueueView:
    if kind == "batch":
        spec = declare("b", "batch", transport="t", plugin="p", members=list, frequency="1h")
    else:
        spec = declare("s", transport="t", plugin="p", frequency="5m", items=5)
    return replace(queue_view(spec, None, 0.0), **changes)


def test_parse_form_takes_the_first_value_and_keeps_blanks() -> None:
    assert parse_form(b"a=1&a=2&b=&c=x%3Cy") == {"a": "1", "b": "", "c": "x<y"}


def test_parse_form_refuses_huge_or_non_ascii_bodies() -> None:
    with pytest.raises(FormError, match="too large"):
        parse_form(b"a=" + b"x" * MAX_BODY)
    with pytest.raises(FormError, match="URL-encoded"):
        parse_form("a=é".encode())


def test_only_changed_settings_are_returned() -> None:
    assert queue_settings({"enabled": "yes", "frequency": "5m", "items": "5"}, view()) == {}
    changed = queue_settings({"enabled": "no", "frequency": "30s", "items": "7"}, view())
    assert changed == {"enabled": False, "frequency": 30.0, "items": 7}


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"enabled": "maybe", "frequency": "5m", "items": "5"}, "enabled must be yes or no"),
        ({"enabled": "yes", "frequency": "soon", "items": "5"}, "frequency"),
        ({"enabled": "yes", "frequency": "0s", "items": "5"}, "longer than 0"),
        ({"enabled": "yes", "frequency": "400d", "items": "5"}, "at most a year"),
        ({"enabled": "yes", "frequency": "5m", "items": "0"}, "items per run"),
        ({"enabled": "yes", "frequency": "5m", "items": "-3"}, "items per run"),
        ({"enabled": "yes", "frequency": "5m", "items": "2.5"}, "items per run"),
        ({"enabled": "yes", "frequency": "5m", "items": ""}, "serial queue needs"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(form: dict[str, str], error: str) -> None:
    with pytest.raises(FormError, match=error):
        queue_settings(form, view())


def test_a_batch_queue_may_leave_items_to_the_formula() -> None:
    assert queue_settings({"enabled": "yes", "frequency": "1h", "items": ""}, view("batch")) == {}
    assert queue_settings({"enabled": "yes", "frequency": "1h", "items": "10"}, view("batch")) == {"items": 10}


@pytest.mark.parametrize("seconds", [0.5, 30, 90, 300, 3600, 5400, 86400, 172800])
def test_the_form_shows_durations_the_parser_reads_back_exactly(seconds: float) -> None:
    from statusq.units import parse_duration

    assert parse_duration(duration_field(seconds)) == seconds


def test_site_names_and_ids_are_checked() -> None:
    assert site_name({"site": " example.org "}) == "example.org"
    for bad in ("", "-x", "a b", "x" * 300, "<script>"):
        with pytest.raises(FormError):
            site_name({"site": bad})
    assert item_id({"id": "42"}) == "42"
    for bad_id in ("", "a b", "x" * 201, "\n"):
        with pytest.raises(FormError):
            item_id({"id": bad_id})
