"""Received frames parsed without stomp.py's per-header regular expressions.

stomp.py parses every frame in its receiver thread with a regular expression per header line
and a ``re.sub`` with a Python callback per key and per value, for the STOMP 1.2 escapes.  Under
``make bench`` that was most of the receiver thread's time, and that thread shares the GIL with
the worker's: every microsecond it spends is one the handler waits.

The fast path here covers the frames brokers send in practice (LF line ends) and produces exactly
what :func:`stomp.utils.parse_frame` produces: it splits each header line once and unescapes only
the lines that hold a backslash (ActiveMQ escapes the colons of every message id); a frame with a
CR before its blank line is handed to stomp.py's function.  A unit test compares the two on a
corpus of frames, escapes and CRLFs included.

:func:`install` swaps one connection's transport to :class:`FastTransport`, whose only change is
the frame reader; the hook it overrides is stomp.py 9's private ``__read_frames``, so it is
installed only when that hook exists (stomp.py is pinned ``<10``) and otherwise stomp.py's own
reader runs.  A unit test holds the text of stomp.py's reader, so a release that changes it
fails the suite rather than drifting from the copy here.
"""

from __future__ import annotations

import re
from typing import Any

import stomp.transport
import stomp.utils
from stomp.utils import Frame

_READER = "_BaseTransport__read_frames"  # stomp.py 9: BaseTransport.__read_frames
_ESCAPE = re.compile(r"\\.")
_UNESCAPES = {"\\r": "\r", "\\n": "\n", "\\c": ":", "\\\\": "\\"}
#: What FastTransport reads off a transport instance (set by stomp.py's ``__init__``).
_INSTANCE_HOOKS = ("_BaseTransport__is_eol", "_BaseTransport__auto_decode")


def parse_frame(frame: bytes) -> Any:
    """A frame as :func:`stomp.utils.parse_frame` returns it (a ``Frame``, or None)."""
    end = frame.find(b"\n\n")
    if end <= 0 or frame[0] in b"\r\n" or frame.find(b"\r", 0, end) >= 0:
        return stomp.utils.parse_frame(frame)
    lines = frame[:end].decode("utf-8", errors="replace").split("\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if not (colon and key):
            continue  # stomp.py skips a line that is not "key:value"
        if "\\" in line:
            key = _unescaped(key)
            if key in headers:
                continue
            value = _unescaped(value)
        elif key in headers:
            continue  # STOMP 1.2: the first of a repeated header wins
        headers[key] = value
    return Frame(lines[0], headers, frame[end + 2 :])


def _unescaped(text: str) -> str:
    if "\\\\" not in text:
        # No escaped backslash: every backslash starts its own two-character escape, none
        # overlaps another, and no replacement makes a new one; so the plain replaces below give
        # what stomp.py's left-to-right regular expression gives, in a tenth of the time.
        return text.replace("\\c", ":").replace("\\n", "\n").replace("\\r", "\r")
    return _ESCAPE.sub(_unescape, text)


def _unescape(match: re.Match[str]) -> str:
    escaped = match.group(0)
    return _UNESCAPES.get(escaped, escaped)  # an unknown escape stays as it came, as in stomp.py


class FastTransport(stomp.transport.Transport):  # type: ignore[misc]
    """stomp.py's transport, reading frames with :func:`parse_frame`."""

    def _BaseTransport__read_frames(self) -> None:  # noqa: N802 (the name stomp.py calls)
        is_eol = self._BaseTransport__is_eol
        auto_decode = self._BaseTransport__auto_decode
        for raw in self._BaseTransport__read():
            f = stomp.utils.HEARTBEAT_FRAME if is_eol(raw) else parse_frame(raw)
            if f is None:
                continue
            if auto_decode:
                f.body = stomp.utils.decode(f.body)
            self.process_frame(f, raw)


def supported() -> bool:
    """Whether this stomp.py has the private hooks :class:`FastTransport` relies on."""
    base = stomp.transport.BaseTransport
    return hasattr(base, _READER) and hasattr(base, "_BaseTransport__read")


def install(conn: Any) -> bool:
    """Give ``conn`` (a stomp.py connection, not yet started) the fast frame reader."""
    transport = conn.transport
    if type(transport) is not stomp.transport.Transport or not supported():
        return False
    if not all(hasattr(transport, hook) for hook in _INSTANCE_HOOKS):
        return False
    transport.__class__ = FastTransport
    return True
