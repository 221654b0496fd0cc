"""StompQueueManager: the production backend, on ActiveMQ or RabbitMQ's STOMP plugin."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from statusq.commands import SECRET_HEADER, parse_command
from statusq.config import Config
from statusq.defaults import DEFAULT_GROUP
from statusq.errors import ConnectionClosed, QueueError
from statusq.item import Message
from statusq.queues.base import BacklogRow, Consumer, DeadLetter, QueueManager, Subscription
from statusq.queues.stomp import wire
from statusq.queues.stomp.consumer import StompConsumer
from statusq.queues.stomp.destinations import Destinations
from statusq.queues.stomp.link import StompLink

log = logging.getLogger(__name__)


class StompQueueManager(QueueManager):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stomp = config.queue.stomp
        self.ack_flush = config.queue.ack_flush
        self.default_site = config.sites.default
        self.destinations = Destinations(self.stomp.basename, self.stomp.breakout)
        self._producer: StompLink | None = None

    # -- producing ----------------------------------------------------------------------------

    def group_of(self, transport: str) -> str:
        """Routing comes from the config, never from the plugins: a producer imports none."""
        return self.config.group_of(transport)

    def groups_for(self, subscription: Subscription) -> set[str]:
        if subscription.groups is not None:
            return set(subscription.groups)
        return {DEFAULT_GROUP} | {t.group for t in self.config.transports.values()}

    def wire_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """Delivery mode on every send.  RabbitMQ turns ``persistent:false`` on a new queue into
        an exclusive auto-delete one, so a non-persistent send simply leaves the header out."""
        return {**headers, "persistent": "true"} if self.stomp.persistent else headers

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
                self._link().send(destination, body, self.wire_headers(headers), confirm=self.stomp.confirm_sends)
                return
            except ConnectionClosed as exc:
                if attempt == 2:
                    raise
                log.warning("send failed, reconnecting: %s", exc)
                if self._producer is not None:
                    self._producer.close()
                    self._producer = None

    def _put(self, message: Message) -> str:
        if any(k.startswith("statusq-") or k in wire.BROKER_HEADERS for k in message.headers):
            raise QueueError("headers may not set statusq-* or broker headers")
        out = {**message.headers, **wire.new_headers(message.site, message.transport, message.content_type)}
        out["priority"] = str(message.priority)
        destination = self.destinations.for_item(self.group_of(message.transport), message.transport, message.site)
        self.send(destination, message.body, out)
        return out[wire.ID]

    def send_control(self, text: str) -> None:
        parse_command(text)  # refuse a bad command here, not in every daemon's log
        if not self.stomp.control_channel:
            raise QueueError("no control channel configured ([queue.stomp] control_channel)")
        headers = {"content-type": "text/plain"}
        if self.stomp.control_secret:
            headers[SECRET_HEADER] = self.stomp.control_secret
        self._link().send(self.stomp.control_channel, text.encode(), headers, confirm=True)

    def subscribe(self, subscription: Subscription) -> Consumer:
        return StompConsumer(self, subscription)

    # -- dead letters: read by consuming the dead-letter queue without acking -----------------

    def _drain_dead(self, wanted: Iterable[str] | None, act: str) -> tuple[list[DeadLetter], int]:
        """Look at every dead letter; ``act`` on the wanted ones ("requeue", "purge" or "list").

        Unacked frames go back to the queue when this link disconnects, so listing is harmless.
        """
        chosen = None if wanted is None else set(wanted)
        link = StompLink(self.stomp, "deadletters")
        link.subscribe(self.stomp.dead_letter_destination, "client-individual", {"activemq.prefetchSize": "1000"})
        link.connect()
        letters: list[DeadLetter] = []
        changed = 0
        try:
            while True:
                try:
                    frame = link.frames.get(timeout=1.0)
                except Exception:
                    break
                h = frame.headers
                letter = DeadLetter(
                    id=h.get(wire.ID) or h.get("message-id", ""),
                    site=h.get(wire.SITE, ""),
                    transport=h.get(wire.TRANSPORT, ""),
                    attempts=int(h.get(wire.ATTEMPTS, "0") or 0),
                    error=h.get(wire.ERROR, ""),
                    enqueued_at=float(h.get(wire.ENQUEUED_AT, "0") or 0),
                    dead_at=float(h.get(wire.DEAD_AT, "0") or 0),
                    content_type=h.get("content-type", ""),
                    body=frame.body,
                    headers={k: v for k, v in h.items() if k not in wire.BROKER_HEADERS},
                )
                letters.append(letter)
                if act == "list" or (chosen is not None and letter.id not in chosen):
                    continue
                with link.transaction() as tx:
                    if act == "requeue":
                        headers = {k: v for k, v in letter.headers.items() if k not in _DEAD_ONLY}
                        headers[wire.ATTEMPT] = "1"
                        destination = h.get(wire.ORIGINAL_DESTINATION) or self.destinations.for_item(
                            self.group_of(letter.transport), letter.transport, letter.site
                        )
                        link.send_in(tx, destination, frame.body, self.wire_headers(headers))
                    link.ack_in(tx, h.get("ack", ""))
                changed += 1
        finally:
            link.close()
        return letters, changed

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters, _ = self._drain_dead(None, "list")
        return sorted(letters, key=lambda d: d.dead_at, reverse=True)[:limit]

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        return self._drain_dead(ids, "requeue")[1]

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        return self._drain_dead(ids, "purge")[1]

    def backlog(self) -> list[BacklogRow]:
        """Dead letters per site and transport; the broker's own counters are a monitoring matter."""
        rows: dict[tuple[str, str], BacklogRow] = {}
        for letter in self._drain_dead(None, "list")[0]:
            key = (letter.site, letter.transport)
            rows.setdefault(key, BacklogRow(*key)).dead += 1
        return [rows[k] for k in sorted(rows)]

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


_DEAD_ONLY = frozenset({wire.ERROR, wire.ATTEMPTS, wire.ORIGINAL_DESTINATION, wire.DEAD_AT})
