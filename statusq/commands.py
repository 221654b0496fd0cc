"""Control commands as they travel: the words, their signature, and the checks a message passes.

The backends' ``send_control`` refuses a bad command before it is sent, and every worker's
:class:`~statusq.control.ControlManager` checks a received one with :func:`accept`: both use the
same vocabulary, kept here in the core layer so that neither reaches up to the other.

Why signed, not a secret header: a secret sent in clear is learnt by anyone who may subscribe to
the control topic, who can then send ``shutdown`` to every daemon; and any captured command could
be sent again.  A command carries an HMAC-SHA256 over its time, a nonce and its text; a worker
refuses one signed more than ``control_max_age`` ago (or ahead: clocks differ), and one whose
nonce it has seen (kept for ``control_max_age``, which is how long a replay could pass the first
check).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from statusq.defaults import CONTROL_MAX_AGE, SITE_PATTERN
from statusq.errors import DataError

SITE_COMMANDS = frozenset({"update-site", "remove-site"})
#: ``pauses``: re-read the pause table now (sent by ``statusq pause``/``resume`` where a control
#: channel exists; the pause itself is the shared store's, so a worker that misses it still
#: follows within ``[queue] pause_recheck``).
PLAIN_COMMANDS = frozenset({"reload", "restart", "shutdown", "pauses"})
COMMANDS = SITE_COMMANDS | PLAIN_COMMANDS
SIGNATURE_HEADER = "statusq-signature"
TIMESTAMP_HEADER = "statusq-timestamp"
NONCE_HEADER = "statusq-nonce"
_SITE = re.compile(SITE_PATTERN)


@dataclass(frozen=True, slots=True)
class ControlCommand:
    command: str
    site: str | None = None

    def __str__(self) -> str:
        return f"{self.command} {self.site}" if self.site else self.command


def parse_command(text: str) -> ControlCommand:
    words = text.split()
    if not words or words[0] not in COMMANDS:
        raise DataError(f"unknown control command {text[:80]!r} (known: {', '.join(sorted(COMMANDS))})")
    command, args = words[0], words[1:]
    if command in SITE_COMMANDS:
        if len(args) != 1 or not _SITE.match(args[0]):
            raise DataError(f"{command} takes one site name, got {' '.join(args)[:80]!r}")
        return ControlCommand(command, args[0])
    if args:
        raise DataError(f"{command} takes no arguments, got {' '.join(args)[:80]!r}")
    return ControlCommand(command)


def _mac(secret: str, timestamp: str, nonce: str, text: str) -> str:
    message = f"{timestamp}\n{nonce}\n{text}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(text: str, secret: str, *, now: float | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers that make ``text`` a command workers with ``secret`` accept."""
    timestamp = f"{time.time() if now is None else now:.3f}"
    nonce = nonce or secrets.token_hex(16)
    return {TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce, SIGNATURE_HEADER: _mac(secret, timestamp, nonce, text)}


class ReplayGuard:
    """The nonces of accepted commands, each kept until its command would be stale anyway.

    Only a correctly signed command reaches it, so a stranger cannot fill it."""

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._seen: dict[str, float] = {}

    def admit(self, nonce: str, signed_at: float, now: float) -> None:
        age = now - signed_at
        if not abs(age) <= self.max_age:  # NaN too
            when = f"{age:.0f}s ago" if age >= 0 else f"{-age:.0f}s ahead"
            raise DataError(f"stale control message: signed {when}, at most {self.max_age:g}s either way")
        self._seen = {n: t for n, t in self._seen.items() if now - t <= self.max_age}
        if nonce in self._seen:
            raise DataError("replayed control message: its nonce was seen before")
        self._seen[nonce] = signed_at


def accept(
    headers: dict[str, str],
    body: bytes,
    *,
    channel: str | None,
    secret: str | None,
    guard: ReplayGuard | None = None,
    now: float | None = None,
) -> ControlCommand:
    """Check where a control message came from, that it is signed (when a secret is configured),
    fresh and new, and what it says; DataError names what was wrong."""
    if channel is None or headers.get("destination") != channel:
        raise DataError(f"control message from {headers.get('destination')!r}, not the control channel")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("control message is not UTF-8 text") from None
    if secret is not None:
        _verify(headers, text, secret, guard or ReplayGuard(CONTROL_MAX_AGE), time.time() if now is None else now)
    return parse_command(text)


def _verify(headers: dict[str, str], text: str, secret: str, guard: ReplayGuard, now: float) -> None:
    timestamp, nonce = headers.get(TIMESTAMP_HEADER, ""), headers.get(NONCE_HEADER, "")
    given = headers.get(SIGNATURE_HEADER)
    if given is None:
        raise DataError("unsigned control message (no statusq-signature header)")
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, found by fuzzing).
    if not hmac.compare_digest(given.encode("utf-8", "replace"), _mac(secret, timestamp, nonce, text).encode()):
        raise DataError("control message with a wrong signature")
    try:
        signed_at = float(timestamp)
    except ValueError:
        raise DataError(f"control message with an unreadable timestamp {timestamp[:40]!r}") from None
    guard.admit(nonce, signed_at, now)


def command_name(body: bytes) -> str:
    """The command a message names, from a closed set (a label value must not be what a stranger
    sends): one of :data:`COMMANDS`, else ``unknown``."""
    words = body[:64].decode("utf-8", "replace").split()
    return words[0] if words and words[0] in COMMANDS else "unknown"
