"""The one way HTML is made in statusq.web: every value is escaped unless it is already markup.

No template engine: the pages are a few tables and forms.  What makes that safe is that text and
markup are different types.  :func:`render` escapes every value it is given except a
:class:`Markup` (which only this module and trusted constants produce), so an item body, a site
name or an error message can never become markup by forgetting a call: the default is escaped.
"""

from __future__ import annotations

import functools
import html
import string
from collections.abc import Iterable


class Markup(str):
    """Text that is HTML already: made by :func:`render`, :func:`join` or from a constant."""

    __slots__ = ()

    def __add__(self, other: str) -> Markup:
        """Markup + text escapes the text: ``+`` must not be a way around :func:`esc`."""
        return Markup(str.__add__(self, esc(other)))

    def __radd__(self, other: str) -> Markup:
        return Markup(str.__add__(esc(other), self))


def esc(value: object) -> Markup:
    """``value`` as HTML: markup stays as it is, anything else becomes escaped text."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def render(template: str, /, **values: object) -> Markup:
    """Fill a constant ``template`` (``str.format`` fields by name) with escaped ``values``.

    Only named fields with no attribute access or format spec: ``{name.attr}`` would reach past
    the escaping, so it is refused rather than trusted.
    """
    _check(template)
    return Markup(template.format_map(_Escaped(values)))


@functools.lru_cache(maxsize=512)
def _check(template: str) -> None:
    for _text, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ValueError(f"template field {{{field}}}: only plain names are allowed")


class _Escaped(dict[str, object]):
    def __getitem__(self, key: str) -> Markup:
        return esc(super().__getitem__(key))

    def __missing__(self, key: str) -> Markup:
        raise KeyError(f"template field {key!r} has no value")


def join(parts: Iterable[object], separator: str = "") -> Markup:
    """Concatenate, escaping whatever is not markup yet."""
    return Markup(esc(separator).join(esc(part) for part in parts))


def table(headers: Iterable[str], rows: Iterable[Iterable[object]], *, empty: str = "none") -> Markup:
    """A plain table; cells are escaped unless they are markup (a form, a link)."""
    head = join(render("<th>{h}</th>", h=h) for h in headers)
    body = [join(render("<td>{c}</td>", c=cell) for cell in row) for row in rows]
    if not body:
        return render('<p class="empty">{empty}</p>', empty=empty)
    return render(
        "<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>",
        head=head,
        body=join(render("<tr>{cells}</tr>", cells=cells) for cells in body),
    )
