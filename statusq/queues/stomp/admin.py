"""The STOMP backend's operator side: dead letters, requeue, purge, control.

A broker's queue depths are the broker's to tell (ActiveMQ's statistics plugin, read by
:mod:`statusq.metrics.activemq`); the backlog is reported as unknown, never counted by reading
the dead-letter queue.  Listing, requeueing and purging dead letters are explicit operator
actions: they read the dead-letter queue, without acking what they leave.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from statusq.commands import parse_command, sign
from statusq.config import StompConfig
from statusq.errors import QueueError
from statusq.queues.base import Admin, Capability, DeadLetter
from statusq.queues.stomp import wire
from statusq.queues.stomp.link import Frame, StompLink

#: Where a dead letter goes back to when it does not say (``wire.ORIGINAL_DESTINATION``).
Route = Callable[[str, str], str]
#: Sends one message on the producer's connection (destination, body, headers).
Send = Callable[[str, bytes, dict[str, str]], None]

_DEAD_ONLY = frozenset({wire.ERROR, wire.ATTEMPTS, wire.ORIGINAL_DESTINATION, wire.DEAD_AT})
_QUIET = 1.0  # the dead-letter queue is taken as read once no frame came for this long


class StompAdmin(Admin):
    """``route(transport, site)``: an item's destination; ``outgoing``: what every send adds to
    its headers; ``send``: the producer's (control commands go out on it)."""

    def __init__(self, config: StompConfig, route: Route, outgoing: wire.Outgoing, send: Send) -> None:
        self.config = config
        self.route = route
        self.outgoing = outgoing
        self.send = send
        control = {Capability.CONTROL} if config.control_channel else set()
        self.capabilities = frozenset({Capability.DEAD_LETTERS, Capability.REQUEUE, Capability.PURGE, *control})

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        letters, _ = self._drain_dead(None, "list")
        return sorted(letters, key=lambda d: d.dead_at, reverse=True)[:limit]

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        return self._drain_dead(ids, "requeue")[1]

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        return self._drain_dead(ids, "purge")[1]

    def send_control(self, text: str) -> None:
        parse_command(text)  # refuse a bad command here, not in every daemon's log
        if not self.config.control_channel:
            raise QueueError("no control channel configured ([queue.stomp] control_channel)")
        headers = {"content-type": "text/plain"}
        if self.config.control_secret:
            headers.update(sign(text, self.config.control_secret))
        self.send(self.config.control_channel, text.encode(), headers)

    def _drain_dead(self, wanted: Iterable[str] | None, act: str) -> tuple[list[DeadLetter], int]:
        """Look at every dead letter; ``act`` on the wanted ones ("requeue", "purge" or "list").

        Unacked frames go back to the queue when this link disconnects, so listing is harmless.
        """
        chosen = None if wanted is None else set(wanted)
        link = StompLink(self.config, "deadletters")
        link.subscribe(self.config.dead_letter_destination, "client-individual", {"activemq.prefetchSize": "1000"})
        link.connect()
        letters: list[DeadLetter] = []
        changed = 0
        try:
            while True:
                try:
                    frame = link.frames.get(timeout=_QUIET)
                except Exception:
                    break
                letter = _letter(frame)
                letters.append(letter)
                if act == "list" or (chosen is not None and letter.id not in chosen):
                    continue
                with link.transaction() as tx:
                    if act == "requeue":
                        headers = {k: v for k, v in letter.headers.items() if k not in _DEAD_ONLY}
                        headers[wire.ATTEMPT] = "1"
                        destination = frame.headers.get(wire.ORIGINAL_DESTINATION) or self.route(
                            letter.transport, letter.site
                        )
                        link.send_in(tx, destination, frame.body, self.outgoing(headers))
                    link.ack_in(tx, frame.headers.get("ack", ""))
                changed += 1
        finally:
            link.close()
        return letters, changed


def _letter(frame: Frame) -> DeadLetter:
    h = frame.headers
    return DeadLetter(
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
