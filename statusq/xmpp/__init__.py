"""XMPP for statusq: per-site connections with keepalive, outgoing and incoming queues, and
address confirmation, all run by the worker of ``statusq daemon --group xmpp --workers 1``.

Producers (an application, a plugin's handler) only enqueue: :func:`send` and
:func:`request_confirmation` here, or ``api.xmpp`` in a plugin.  The worker of the ``xmpp`` group
runs an :class:`~statusq.xmpp.manager.XmppManager` beside its queue listener (see
:func:`xmpp_managers`), which owns the connections and the handlers' sending.  Importing this
package does not import slixmpp; only that worker does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from statusq.defaults import XMPP_GROUP
from statusq.xmpp.api import (
    CONFIRM_TRANSPORT,
    IN_TRANSPORT,
    OUT_TRANSPORT,
    XmppApi,
    confirmation_status,
    request_confirmation,
    send,
)
from statusq.xmpp.errors import XmppError, XmppUnavailable
from statusq.xmpp.handlers import register as register_handlers

if TYPE_CHECKING:
    from statusq.config import Config
    from statusq.io.manager import IoManager
    from statusq.plugins import PluginApi
    from statusq.queues.base import QueueManager
    from statusq.registry import HandlerRegistry
    from statusq.sites import SiteTable

log = logging.getLogger(__name__)

__all__ = [
    "CONFIRM_TRANSPORT",
    "IN_TRANSPORT",
    "OUT_TRANSPORT",
    "XMPP_GROUP",
    "XmppApi",
    "XmppError",
    "XmppUnavailable",
    "confirmation_status",
    "register",
    "request_confirmation",
    "send",
    "xmpp_managers",
]


def register(api: PluginApi) -> None:
    """Register the ``xmppout`` and ``xmppconfirm`` handlers in group ``xmpp`` (idempotent)."""
    register_handlers(api)


def xmpp_managers(
    config: Config,
    sites: SiteTable,
    registry: HandlerRegistry,
    queue_manager: QueueManager,
    groups: Collection[str] | None,
) -> list[IoManager]:
    """The IoManagers of a worker serving ``groups``: an XmppManager when the worker was started
    for the ``xmpp`` group by name (``--group xmpp``), else none.

    A worker serving every group (no ``--group``) opens no connection: with several workers each
    would log in with the same JIDs.  It warns instead when XMPP handlers are registered, because
    it will take their items and fail them (they are retried, and dead-lettered in the end).
    """
    if groups is not None and XMPP_GROUP in groups:
        # Local: the manager brings SQLAlchemy and slixmpp, for the xmpp group's worker only.
        from statusq.xmpp.manager import XmppManager  # noqa: PLC0415

        return [XmppManager(config, sites, registry, queue_manager)]
    if groups is None and XMPP_GROUP in registry.groups():
        log.warning(
            "handlers of group %r are registered but this worker serves every group and opens no XMPP "
            "connection: run `statusq daemon --group %s --workers 1` for them, and give this daemon "
            "--group for the others",
            XMPP_GROUP,
            XMPP_GROUP,
        )
    return []
