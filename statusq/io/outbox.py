"""The relay of the transactional outbox to the broker (statusq.queues.db.outbox), on a thread of
its own (:mod:`statusq.io.relaythread`: a full broker's late answers must not stop the worker)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import Engine

from statusq.errors import StatusqError
from statusq.io.relaythread import RelayThread
from statusq.item import Message
from statusq.queues.db.outbox import BATCH, open_outbox, relay

log = logging.getLogger(__name__)

#: After a failed relay (database or broker away), the next try waits this long.
RETRY_AFTER = 5.0


class OutboxRelay(RelayThread):
    """Every ``every`` seconds, the committed outbox rows to the broker; at once again while
    full batches come."""

    name = "outbox"

    def __init__(self, url: str, send: Callable[[list[Message]], object], every: float, join_timeout: float) -> None:
        super().__init__("outbox-relay", join_timeout)
        self.url = url
        self.send = send
        self.every = every
        self._engine: Engine | None = None

    def look(self) -> float:
        try:
            if self._engine is None:
                self._engine = open_outbox(self.url)
            sent = relay(self._engine, self.send)
        except StatusqError as exc:
            log.warning("outbox relay failed, trying again in %.0fs: %s", RETRY_AFTER, exc)
            return RETRY_AFTER
        if sent:
            log.info("relayed %d item(s) from the outbox", sent)
            self.moved(sent)
        return 0.0 if sent == BATCH else self.every

    def stop(self) -> None:
        super().stop()
        if self._engine is not None:
            self._engine.dispose()
