"""StompQueueManager: the production backend, on ActiveMQ or RabbitMQ's STOMP plugin.

The manager is the producer (one connection, opened on the first send); it builds each worker's
:class:`~statusq.queues.stomp.consumer.StompConsumer` and
:class:`~statusq.queues.stomp.control.StompControlChannel` (a connection each), and has a
:class:`~statusq.queues.stomp.admin.StompAdmin`.  Each is handed what it needs of the routing
(destinations, the delivery mode), not the manager.
"""

from __future__ import annotations

import logging

from statusq.config import Config
from statusq.defaults import DEFAULT_GROUP
from statusq.errors import ConnectionClosed, QueueError
from statusq.item import Message
from statusq.queues.base import Consumer, ControlChannel, QueueManager, Subscription
from statusq.queues.stomp import wire
from statusq.queues.stomp.admin import StompAdmin
from statusq.queues.stomp.consumer import StompConsumer
from statusq.queues.stomp.control import StompControlChannel
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.link import StompLink

log = logging.getLogger(__name__)


class StompQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stomp = config.queue.stomp
        self.default_site = config.sites.default
        self.default_priorities = config.default_priorities()
        self.destinations = Destinations(self.stomp.basename, self.stomp.breakout)
        self.outgoing = wire.delivery_mode(self.stomp.persistent)
        self._producer: StompLink | None = None
        self.admin = StompAdmin(self.stomp, self.destination_of, self.outgoing, self._send_confirmed)

    # -- producing ----------------------------------------------------------------------------

    def destination_of(self, transport: str, site: str) -> str:
        """Routing comes from the config, never from the plugins: a producer imports none."""
        return self.destinations.for_item(self.config.group_of(transport), transport, site)

    def groups_for(self, subscription: Subscription) -> set[str]:
        if subscription.groups is not None:
            return set(subscription.groups)
        return {DEFAULT_GROUP} | {t.group for t in self.config.transports.values()}

    def _link(self) -> StompLink:
        if self._producer is None:
            self._producer = StompLink(self.stomp, "producer")
        if not self._producer.connected:
            self._producer.connect()
        return self._producer

    def send(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """Send with failover: on a dropped connection, reconnect (next server) and send once more.
        A send that reached the broker just before the drop may so arrive twice, never zero times."""
        for attempt in (1, 2):
            try:
                self._link().send(destination, body, self.outgoing(headers), confirm=self.stomp.confirm_sends)
                return
            except ConnectionClosed as exc:
                if attempt == 2:
                    raise
                log.warning("send failed, reconnecting: %s", exc)
                if self._producer is not None:
                    self._producer.close()
                    self._producer = None

    def _send_confirmed(self, destination: str, body: bytes, headers: dict[str, str]) -> None:
        """As it is, confirmed by a receipt (control commands)."""
        self._link().send(destination, body, headers, confirm=True)

    def _put(self, message: Message) -> str:
        if any(k.startswith("statusq-") or k in wire.BROKER_HEADERS for k in message.headers):
            raise QueueError("headers may not set statusq-* or broker headers")
        out = {**message.headers, **wire.new_headers(message.site, message.transport, message.content_type)}
        out["priority"] = str(message.priority)
        self.send(self.destination_of(message.transport, message.site), message.body, out)
        return out[wire.ID]

    # -- a worker's parts ---------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> Consumer:
        return StompConsumer(
            self.stomp,
            self.destinations.for_groups(self.groups_for(subscription)),
            self.destinations,
            default_site=self.default_site,
            outgoing=self.outgoing,
            ack_flush=self.config.queue.ack_flush,
        )

    def control_channel(self) -> ControlChannel | None:
        if not self.stomp.control_channel:
            return None
        return StompControlChannel(self.stomp, self.stomp.control_channel)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
