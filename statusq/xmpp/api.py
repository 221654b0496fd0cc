"""Sending over XMPP from an application or a plugin: items on the ``xmppout`` and
``xmppconfirm`` transports, which the xmpp group's worker turns into stanzas.

Light on purpose (no slixmpp import): an application that only enqueues pays nothing for XMPP.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statusq.errors import DataError

if TYPE_CHECKING:
    from statusq.config import Config
    from statusq.queues.base import QueueManager
    from statusq.xmpp.confirm import AddressStatus, ConfirmStore

#: Outgoing messages, handled by the xmpp group's worker: ``{"to", "body", "type"}``.
OUT_TRANSPORT = "xmppout"
#: Chat received by a site's JID, for plugins' handlers: ``{"sender", "from", "to", "body", "id"}``.
IN_TRANSPORT = "xmppin"
#: Confirmation requests: ``{"address", "user"}``; the worker sends a code to the address.
CONFIRM_TRANSPORT = "xmppconfirm"
MESSAGE_TYPES = ("chat", "normal", "headline")
MAX_BODY = 100_000  # characters; servers refuse much larger stanzas anyway

# The shape of a JID, checked cheaply here; the worker checks it fully (stringprep) with slixmpp.
_JID = re.compile(r"^(?:[^\s@/\"&'<>:]{1,1023}@)?[^\s@/]{1,1023}(?:/\S.{0,1022})?$", re.DOTALL)


def check_address(value: Any, what: str = "address") -> str:
    if not isinstance(value, str) or not _JID.match(value):
        raise DataError(f"{what} {value!r} is not a JID (user@domain or user@domain/resource)")
    return value


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    to: str
    body: str
    type: str = "chat"

    def __post_init__(self) -> None:
        check_address(self.to, "recipient")
        if not isinstance(self.body, str) or not self.body:
            raise DataError("an XMPP message needs a non-empty text body")
        if len(self.body) > MAX_BODY:
            raise DataError(f"an XMPP message body is limited to {MAX_BODY} characters, not {len(self.body)}")
        if self.type not in MESSAGE_TYPES:
            raise DataError(f"message type {self.type!r} is not one of {', '.join(MESSAGE_TYPES)}")

    @classmethod
    def from_payload(cls, payload: Any) -> OutgoingMessage:
        if not isinstance(payload, dict) or set(payload) - {"to", "body", "type"}:
            raise DataError(f"an {OUT_TRANSPORT} payload is an object with to, body and type, not {payload!r:.200}")
        return cls(payload.get("to"), payload.get("body"), payload.get("type", "chat"))  # type: ignore[arg-type]

    def payload(self) -> dict[str, str]:
        return {"to": self.to, "body": self.body, "type": self.type}


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    address: str
    user: str | None = None  # the application's reference for whoever asked, kept with the row

    def __post_init__(self) -> None:
        check_address(self.address)
        if self.user is not None and (not isinstance(self.user, str) or len(self.user) > 255):
            raise DataError("user must be a string of at most 255 characters")

    @classmethod
    def from_payload(cls, payload: Any) -> ConfirmRequest:
        if not isinstance(payload, dict) or set(payload) - {"address", "user"}:
            raise DataError(f"an {CONFIRM_TRANSPORT} payload is an object with address and user, not {payload!r:.200}")
        return cls(payload.get("address"), payload.get("user"))  # type: ignore[arg-type]

    def payload(self) -> dict[str, str]:
        return {"address": self.address} | ({"user": self.user} if self.user is not None else {})


def send(
    queue_manager: QueueManager,
    site: str,
    to: str,
    body: str,
    *,
    message_type: str = "chat",
    priority: int | None = None,
) -> str:
    """Queue a message from ``site``'s JID to ``to``; returns the item's id.  It is sent by the
    xmpp group's worker once connected, retried while it is not, never dropped silently."""
    message = OutgoingMessage(to, body, message_type)
    return queue_manager.enqueue(message.payload(), OUT_TRANSPORT, site=site, priority=priority)


def request_confirmation(
    queue_manager: QueueManager,
    site: str,
    address: str,
    *,
    user: str | None = None,
    priority: int | None = None,
) -> str:
    """Queue a confirmation: the worker sends ``address`` a code, and its reply ``confirm CODE``
    marks the address confirmed (see :func:`confirmation_status`)."""
    request = ConfirmRequest(address, user)
    return queue_manager.enqueue(request.payload(), CONFIRM_TRANSPORT, site=site, priority=priority)


def confirmation_status(config: Config, site: str, address: str) -> AddressStatus | None:
    """Where ``address`` stands on ``site`` (confirmed, pending), read from the database."""
    # Local: SQLAlchemy and slixmpp, only when a status is asked for (an enqueuer pays nothing).
    from statusq.xmpp.confirm import ConfirmStore  # noqa: PLC0415
    from statusq.xmpp.manager import bare_jid  # noqa: PLC0415

    store = ConfirmStore.open(config.db_url)
    try:
        return store.status(site, bare_jid(address))
    finally:
        store.close()


class XmppApi:
    """``api.xmpp`` in a plugin's ``register(api)``: the calls above, on a queue manager opened on
    first use (by ``connect``, the process's own way, with its middleware) and shared by the
    plugins of the process.  Keep the object, call it from handlers::

        def register(api):
            xmpp = api.xmpp
            class Notify(QueueHandler):
                def handle(self, item):
                    xmpp.send(item.site, "admin@example.org", f"done: {item.id}")
    """

    def __init__(self, config: Config, connect: Callable[[], QueueManager]) -> None:
        self.config = config
        self._connect = connect
        self._queue: QueueManager | None = None
        self._store: ConfirmStore | None = None

    def queue_manager(self) -> QueueManager:
        if self._queue is None:
            self._queue = self._connect()
        return self._queue

    def send(self, site: str, to: str, body: str, *, message_type: str = "chat") -> str:
        return send(self.queue_manager(), site, to, body, message_type=message_type)

    def request_confirmation(self, site: str, address: str, *, user: str | None = None) -> str:
        return request_confirmation(self.queue_manager(), site, address, user=user)

    def status(self, site: str, address: str) -> AddressStatus | None:
        from statusq.xmpp.confirm import ConfirmStore  # noqa: PLC0415 -- as confirmation_status
        from statusq.xmpp.manager import bare_jid  # noqa: PLC0415

        if self._store is None:
            self._store = ConfirmStore.open(self.config.db_url)
        return self._store.status(site, bare_jid(address))

    def close(self) -> None:
        if self._queue is not None:
            self._queue.close()
            self._queue = None
        if self._store is not None:
            self._store.close()
            self._store = None
