"""Reading the page's forms: every field checked here, before anything is stored or sent.

The rules are the CLI's (a frequency is a positive duration, items per run a whole number of at
least one, a site a valid site name), so the page cannot store what ``statusq queues set`` or
``statusq control`` would refuse.  A mistake is a :class:`FormError` whose message is shown to
the person who made it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from statusq.defaults import NAME_PATTERN, SITE_PATTERN
from statusq.dispatcher.status import QueueView
from statusq.errors import StatusqError
from statusq.units import parse_duration

#: A form is a few short fields; anything longer is refused before it is parsed.
MAX_BODY = 16 * 1024
_SITE = re.compile(SITE_PATTERN)
_TRANSPORT = re.compile(NAME_PATTERN)
MAX_REASON = 500
_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_MAX_ITEMS = 1_000_000
_MAX_FREQUENCY = 366 * 86400.0


class FormError(StatusqError):
    """What was wrong with a submitted form, in words for the person who sent it."""


def parse_form(body: bytes) -> dict[str, str]:
    """``application/x-www-form-urlencoded`` into one value per field (the first one)."""
    if len(body) > MAX_BODY:
        raise FormError(f"form too large ({len(body)} bytes)")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise FormError("a form must be URL-encoded") from None
    fields = parse_qs(text, keep_blank_values=True, max_num_fields=64)
    return {name: values[0] for name, values in fields.items()}


def queue_settings(form: dict[str, str], view: QueueView) -> dict[str, Any]:
    """The overrides to store: only what differs from the settings in force."""
    wanted: dict[str, Any] = {}
    enabled = form.get("enabled", "")
    if enabled not in ("yes", "no"):
        raise FormError("enabled must be yes or no")
    wanted["enabled"] = enabled == "yes"
    try:
        frequency = parse_duration(form.get("frequency", "").strip())
    except ValueError as exc:
        raise FormError(f"frequency: {exc}") from None
    if not 0 < frequency <= _MAX_FREQUENCY:
        raise FormError("frequency must be longer than 0 and at most a year")
    wanted["frequency"] = frequency
    items = form.get("items", "").strip()
    if items:
        if not items.isdigit() or not 1 <= int(items) <= _MAX_ITEMS:
            raise FormError(f"items per run must be a whole number from 1 to {_MAX_ITEMS}, not {items[:20]!r}")
        wanted["items"] = int(items)
    elif view.kind == "serial":
        raise FormError("a serial queue needs a number of items per run")
    current = {"enabled": view.enabled, "frequency": view.frequency, "items": view.items}
    return {key: value for key, value in wanted.items() if value != current[key]}


def site_name(form: dict[str, str]) -> str:
    name = form.get("site", "").strip()
    if not _SITE.match(name):
        raise FormError(f"{name[:80]!r} is not a site name (letters, digits, '_.-', up to 255)")
    return name


def pause_scope(form: dict[str, str]) -> dict[str, str]:
    """``kind`` (site or transport) and ``name``, as ``qm.pause``/``qm.resume`` take them."""
    kind, name = form.get("kind", ""), form.get("name", "").strip()
    if kind == "site":
        return {"site": site_name({"site": name})}
    if kind == "transport":
        if not _TRANSPORT.match(name):
            raise FormError(f"{name[:80]!r} is not a transport name (lowercase letters, digits, '_.-')")
        return {"transport": name}
    raise FormError("pause a site or a transport")


def reason(form: dict[str, str]) -> str:
    text = form.get("reason", "").strip()
    if len(text) > MAX_REASON:
        raise FormError(f"a reason of at most {MAX_REASON} characters, please")
    return text


def item_id(form: dict[str, str]) -> str:
    value = form.get("id", "").strip()
    if not _ID.match(value):
        raise FormError("no valid item id given")
    return value


def transport_name(form: dict[str, str]) -> str | None:
    """An optional transport ("" or absent: every transport)."""
    name = form.get("transport", "").strip()
    if not name:
        return None
    if not _TRANSPORT.match(name):
        raise FormError(f"{name[:80]!r} is not a transport name (lowercase letters, digits, '_.-', up to 64)")
    return name
