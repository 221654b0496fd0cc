"""Control commands as they travel: the words, the secret header, and the checks a message passes.

The backends' ``send_control`` refuses a bad command before it is sent, and every worker's
:class:`~statusq.control.ControlManager` checks a received one with :func:`accept`: both use the
same vocabulary, kept here in the core layer so that neither reaches up to the other.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass

from statusq.defaults import SITE_PATTERN
from statusq.errors import DataError

SITE_COMMANDS = frozenset({"update-site", "remove-site"})
PLAIN_COMMANDS = frozenset({"reload", "restart", "shutdown"})
COMMANDS = SITE_COMMANDS | PLAIN_COMMANDS
SECRET_HEADER = "statusq-secret"
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


def accept(headers: dict[str, str], body: bytes, *, channel: str | None, secret: str | None) -> ControlCommand:
    """Check where a control message came from and what it says; DataError names what was wrong."""
    if channel is None or headers.get("destination") != channel:
        raise DataError(f"control message from {headers.get('destination')!r}, not the control channel")
    if secret is not None and not hmac.compare_digest(headers.get(SECRET_HEADER, ""), secret):
        raise DataError("control message without the right statusq-secret header")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError("control message is not UTF-8 text") from None
    return parse_command(text)


def command_name(body: bytes) -> str:
    """The command a message names, from a closed set (a label value must not be what a stranger
    sends): one of :data:`COMMANDS`, else ``unknown``."""
    words = body[:64].decode("utf-8", "replace").split()
    return words[0] if words and words[0] in COMMANDS else "unknown"
