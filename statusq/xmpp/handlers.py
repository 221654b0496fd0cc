"""The handlers of the ``xmppout`` and ``xmppconfirm`` transports, in group ``xmpp``.

They run in the worker that owns the connections (``statusq daemon --group xmpp --workers 1``)
and hand their work to its :class:`~statusq.xmpp.manager.XmppManager`.  A message counts as sent
once the server has taken it; when the site is not connected the handler raises
:class:`~statusq.xmpp.errors.XmppUnavailable`, so the item is retried with backoff and, if the
outage outlasts ``max_retries``, dead-lettered with that reason (``statusq deadletters retry``
puts it back) — never dropped.
"""

from __future__ import annotations

from statusq.defaults import XMPP_GROUP
from statusq.handler import QueueHandler
from statusq.item import QueueItem
from statusq.plugins import PluginApi
from statusq.xmpp import owner
from statusq.xmpp.api import CONFIRM_TRANSPORT, OUT_TRANSPORT, ConfirmRequest, OutgoingMessage


class XmppOutHandler(QueueHandler):
    """``{"to": JID, "body": text, "type": "chat"}`` → one message from the item's site."""

    def handle(self, item: QueueItem) -> bool:
        message = OutgoingMessage.from_payload(item.payload)
        owner.require().send(item.site, message.to, message.body, message.type)
        return True


class XmppConfirmHandler(QueueHandler):
    """``{"address": JID, "user": ref}`` → a fresh code, stored, then sent to the address."""

    def handle(self, item: QueueItem) -> bool:
        request = ConfirmRequest.from_payload(item.payload)
        owner.require().send_confirmation(item.site, request.address, request.user)
        return True


def register(api: PluginApi) -> None:
    """Register the XMPP transports (group ``xmpp``), from a plugin's ``register(api)``.  Several
    plugins may call it: the first registers, the others find it done."""
    for transport, handler_class in ((OUT_TRANSPORT, XmppOutHandler), (CONFIRM_TRANSPORT, XmppConfirmHandler)):
        # PluginApi has no lookup of its own; the registry still rejects a clash with a
        # transport of the same name that another plugin registered for something else.
        existing = api._registry.get(transport)
        if existing is None or existing.handler_class is not handler_class:
            api.register_handler(transport, handler_class, group=XMPP_GROUP)
