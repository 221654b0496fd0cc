"""The rendering helper: nothing reaches a page unescaped unless it is markup already."""

from __future__ import annotations

import pytest

from statusq.web.html import Markup, esc, join, render, table

HOSTILE = "<script>alert('x')</script>\"&"


def test_values_are_escaped_including_quotes() -> None:
    out = render('<td title="{t}">{v}</td>', t=HOSTILE, v=HOSTILE)
    assert "<script>" not in out
    assert out == (
        '<td title="&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;">'
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;</td>"
    )


def test_markup_passes_through_once_and_is_not_escaped_twice() -> None:
    inner = render("<b>{x}</b>", x="a&b")
    assert render("<p>{inner}</p>", inner=inner) == "<p><b>a&amp;b</b></p>"
    assert esc(inner) is inner


def test_concatenation_keeps_text_escaped() -> None:
    joined = Markup("<p>") + HOSTILE
    assert isinstance(joined, Markup)
    assert "<script>" not in joined
    assert isinstance(HOSTILE + Markup("<br>"), Markup)
    assert (HOSTILE + Markup("<br>")).endswith("<br>") and "<script>" not in HOSTILE + Markup("<br>")


def test_join_and_table_escape_cells_but_keep_markup_cells() -> None:
    assert join(["<a>", Markup("<b>")], "<") == "&lt;a&gt;&lt;<b>"
    out = table(["<h>"], [[HOSTILE, Markup("<button>ok</button>")]])
    assert "<th>&lt;h&gt;</th>" in out
    assert "&lt;script&gt;" in out and "<button>ok</button>" in out
    assert "<script>" not in out


def test_an_empty_table_says_so_escaped() -> None:
    assert table(["A"], [], empty="<none>") == '<p class="empty">&lt;none&gt;</p>'


@pytest.mark.parametrize("template", ["{x.__class__}", "{x!r}", "{x:>10}", "{0}"])
def test_templates_may_only_name_plain_fields(template: str) -> None:
    with pytest.raises(ValueError, match="only plain names"):
        render(template, x="v")


def test_a_field_without_a_value_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(KeyError, match="missing"):
        render("{missing}")


def test_none_renders_as_nothing() -> None:
    assert esc(None) == ""
