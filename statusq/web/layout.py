"""The frame around every page, forms with their CSRF field, and the style sheet.

Forms are plain HTML posted to the server, which answers with a redirect (POST, redirect, GET),
so everything works with JavaScript off, and the page sends none: the CSP forbids scripts.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from statusq.web.auth import Access
from statusq.web.html import Markup, join, render

EMPTY = Markup("")
NAV = (
    ("/", "Overview"),
    ("/queues", "Periodic queues"),
    ("/deadletters", "Dead letters"),
    ("/sites", "Sites"),
    ("/pauses", "Pauses"),
)

#: No script from anywhere, no inline style, forms only to ourselves, never framed.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True, slots=True)
class Context:
    """What a page needs to know about the request it answers."""

    access: Access
    #: A token is configured: changes are possible once logged in.
    writable: bool
    path: str = "/"
    flash: list[str] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        return self.access.session.csrf if self.access.session is not None else ""

    @property
    def can_write(self) -> bool:
        return self.access.write


def form(ctx: Context, action: str, button: str, fields: Markup = EMPTY, *, css: str = "") -> Markup:
    """A POST form to ``action`` carrying this session's CSRF token."""
    return render(
        '<form method="post" action="{action}" class="{css}"><input type="hidden" name="csrf" value="{csrf}">'
        "{fields}<button type=\"submit\">{button}</button></form>",
        action=action, css=css, csrf=ctx.csrf, fields=fields, button=button,
    )  # fmt: skip


def hidden(name: str, value: str) -> Markup:
    return render('<input type="hidden" name="{name}" value="{value}">', name=name, value=value)


def read_only_note(ctx: Context) -> Markup:
    """Why there are no buttons: nobody may change anything, or this browser is not logged in."""
    if ctx.can_write:
        return Markup("")
    if not ctx.writable:
        return Markup('<p class="note">Read-only: no <code>[web] token</code> is configured.</p>')
    return Markup('<p class="note">Read-only until you <a href="/login">log in</a> with the token.</p>')


def _here(href: str, path: str) -> str:
    return "here" if href == path else ""


def page(ctx: Context, title: str, body: Markup, *, refresh: int | None = None) -> Markup:
    nav = join(
        render('<a href="{href}" class="{cls}">{label}</a>', href=href, label=label, cls=_here(href, ctx.path))
        for href, label in NAV
    )
    if ctx.access.session is not None:
        who = form(ctx, "/logout", "Log out", css="inline")
    elif ctx.writable and not ctx.access.write:
        who = Markup('<a href="/login">Log in</a>')
    else:
        who = Markup("")
    flash = join(render('<p class="flash">{message}</p>', message=m) for m in ctx.flash)
    meta = render('<meta http-equiv="refresh" content="{s}">', s=refresh) if refresh else Markup("")
    return render(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title} - statusq on {host}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="/style.css">{meta}</head><body>'
        '<header><strong>statusq</strong> on {host} <nav>{nav}</nav><span class="who">{who}</span></header>'
        "<main><h1>{title}</h1>{flash}{body}</main></body></html>",
        title=title, host=socket.gethostname(), meta=meta, nav=nav, who=who, flash=flash, body=body,
    )  # fmt: skip


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f6f7f9; }
header { background: #1d3557; color: #fff; padding: .6em 1em; display: flex; gap: 1.5em; align-items: center; }
header nav a { color: #dbe7f5; margin-right: 1em; text-decoration: none; }
header nav a.here { color: #fff; font-weight: bold; border-bottom: 2px solid #fff; }
header .who { margin-left: auto; }
header .who a { color: #fff; }
main { padding: 0 1.2em 2em; }
h1 { font-size: 1.4em; }
h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; background: #fff; margin: .4em 0; }
th, td { border: 1px solid #d5d9e0; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #e9edf2; font-weight: 600; }
td code, pre { white-space: pre-wrap; word-break: break-all; max-width: 40em; display: inline-block; }
form { margin: 0; }
form.inline { display: inline; }
form.row { display: flex; gap: .4em; align-items: center; flex-wrap: wrap; }
input[type=text], input[type=password] { width: 7em; }
input.wide, input[type=password] { width: 18em; }
button { cursor: pointer; }
.flash { background: #fff4d6; border: 1px solid #e8c872; padding: .4em .8em; }
.note { color: #555; }
.problem { color: #a4161a; }
.empty { color: #777; font-style: italic; }
svg.chart { background: #fff; border: 1px solid #d5d9e0; }
svg.chart .grid { stroke: #e3e6ea; stroke-width: 1; }
svg.chart .axis { fill: #666; font-size: 11px; }
svg.chart polyline.rate { stroke: #1d6fb8; stroke-width: 2; }
svg.chart circle.rate { fill: #1d6fb8; }
"""
