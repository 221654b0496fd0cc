"""The bundled XMPP plugin: an echo bot, and notifications of handled items.

* Registers statusq's XMPP transports (``xmppout``, ``xmppconfirm``; group ``xmpp``), so enabling
  this plugin is all a config needs to send and confirm over XMPP.
* ``xmppin`` (group ``xmpp``): the echo bot.  Whatever a user sends a site's JID comes back,
  prefixed with the site's ``echo_prefix``; ``help`` explains.  (``confirm CODE`` never gets here:
  the XMPP worker answers it.)
* ``notify`` (group ``main``): a piece of the application's work that, once handled, tells the
  site's ``notify`` addresses about it over XMPP, through the queue (``api.xmpp.send``).

Site settings (``sites/<site>.toml``)::

    [settings.xmpp]                  # the site's connection (see README, "XMPP")
    jid = "bot@example.org"
    password = "secret"

    [settings.xmppbot]
    echo = true                      # answer chat (default true)
    echo_prefix = "echo: "           # default ""
    notify = ["admin@example.org"]   # told about every handled notify item (default none)
"""

from __future__ import annotations

import logging

import statusq.xmpp
from statusq import PluginApi, QueueHandler, QueueItem, current_site
from statusq.xmpp import XmppApi

log = logging.getLogger("statusq.plugin.xmppbot")

HELP = "I am {site}'s echo bot: I send back what you write. Got a confirmation code? Reply: confirm CODE"


def _settings() -> dict[str, object]:
    settings = current_site().settings.get("xmppbot", {})
    return settings if isinstance(settings, dict) else {}


def make_handlers(xmpp: XmppApi) -> tuple[type[QueueHandler], type[QueueHandler]]:
    class EchoBot(QueueHandler):
        def handle(self, item: QueueItem) -> bool:
            settings = _settings()
            if not settings.get("echo", True):
                return True
            sender, body = item.payload["from"], item.payload["body"]
            if body.strip().lower() == "help":
                reply = HELP.format(site=item.site)
            else:
                reply = f"{settings.get('echo_prefix', '')}{body}"
            xmpp.send(item.site, sender, reply)
            return True

    class Notify(QueueHandler):
        def handle(self, item: QueueItem) -> bool:
            text = item.payload.get("text", "") if isinstance(item.payload, dict) else str(item.payload)
            log.info("[%s] handled notify item %s: %s", item.site, item.id, text)  # the work itself
            recipients = _settings().get("notify", [])
            for address in recipients if isinstance(recipients, list) else []:
                xmpp.send(item.site, address, f"[{item.site}] handled item {item.id}: {text}")
            return True

    return EchoBot, Notify


def register(api: PluginApi) -> None:
    statusq.xmpp.register(api)
    echo, notify = make_handlers(api.xmpp)
    api.register_handler(statusq.xmpp.IN_TRANSPORT, echo, group=statusq.xmpp.XMPP_GROUP)
    api.register_handler("notify", notify)
