"""The IoManager that relays the transactional outbox to the broker (statusq.queues.db.outbox)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Engine

from statusq.errors import StatusqError
from statusq.io.manager import IoManager
from statusq.item import Message
from statusq.queues.db.outbox import BATCH, open_outbox, relay

log = logging.getLogger(__name__)

#: After a failed relay (database or broker away), the next try waits this long.
RETRY_AFTER = 5.0


class OutboxRelay(IoManager):
    """Every ``every`` seconds, the committed outbox rows to the broker; at once again while
    full batches come."""

    name = "outbox"

    def __init__(self, url: str, send: Callable[[list[Message]], object], every: float) -> None:
        self.url = url
        self.send = send
        self.every = every
        self._engine: Engine | None = None
        self._next = 0.0

    def timeout(self) -> float:
        return max(0.0, self._next - time.monotonic())

    def poll(self) -> bool:
        if time.monotonic() < self._next:
            return False
        try:
            if self._engine is None:
                self._engine = open_outbox(self.url)
            sent = relay(self._engine, self.send)
        except StatusqError as exc:
            log.warning("outbox relay failed, trying again in %.0fs: %s", RETRY_AFTER, exc)
            self._next = time.monotonic() + RETRY_AFTER
            return False
        if sent:
            log.info("relayed %d item(s) from the outbox", sent)
        self._next = time.monotonic() + (0.0 if sent == BATCH else self.every)
        return sent > 0

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
