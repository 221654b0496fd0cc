"""When a dropped STOMP link tries again: the consumer's and the control channel's one rule."""

from __future__ import annotations

import logging
import time

from statusq.config import StompConfig
from statusq.errors import QueueError
from statusq.queues.stomp.link import StompLink

log = logging.getLogger(__name__)


class Redial:
    """When a link that dropped may try again: at once, then after ``reconnect_delay`` doubling
    up to ``reconnect_delay_max`` while attempts fail.  Asked from the worker's loop, so a broker
    that is down costs one connect attempt per delay, never a wait."""

    def __init__(self, link: StompLink, config: StompConfig, what: str) -> None:
        self.link = link
        self.config = config
        self.what = what
        self.retry_at = 0.0
        self.delay = config.reconnect_delay

    def due_in(self) -> float:
        """Seconds until the next attempt is due (0: connected, or due now)."""
        return 0.0 if self.link.connected else max(0.0, self.retry_at - time.monotonic())

    def connect(self) -> bool:
        """Try once if due; True if the link is connected afterwards (and was not before)."""
        if time.monotonic() < self.retry_at:
            return False
        try:
            self.link.connect()
        except QueueError as exc:
            log.error("%s cannot connect, retrying in %.1fs: %s", self.what, self.delay, exc)
            self.retry_at = time.monotonic() + self.delay
            self.delay = min(self.config.reconnect_delay_max, self.delay * 2)
            return False
        self.delay = self.config.reconnect_delay
        return True
