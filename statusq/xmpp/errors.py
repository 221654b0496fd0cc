"""Errors of the XMPP part; slixmpp's own exceptions never leave the session and thread code."""

from __future__ import annotations

import os

from statusq.errors import StatusqError


class XmppError(StatusqError):
    """An XMPP item cannot be handled as things stand (no connection here, no settings)."""


class XmppUnavailable(XmppError):
    """The site's connection is down or the server did not confirm: the item is retried later."""

    exit_code = os.EX_UNAVAILABLE
