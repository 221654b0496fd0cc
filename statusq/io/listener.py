"""The queue listener: the IoManager that feeds deliveries from a consumer to the processor."""

from __future__ import annotations

import dataclasses
import logging
import time

from statusq.defaults import POLL_MIN
from statusq.errors import QueueError
from statusq.io.manager import IoManager
from statusq.item import Delivery
from statusq.processor import ItemProcessor
from statusq.queues.base import Consumer, ControlChannel

log = logging.getLogger(__name__)

_REDELIVERED = "redelivered by the broker: the worker holding it died or disconnected"


class QueueListener(IoManager):
    """Handles one item per poll, so the master looks at signals and limits between items.

    When a fetch finds nothing it backs off (POLL_MIN doubling to ``poll_max``); a readable
    descriptor (a NOTIFY, a broker frame) or a handled item brings it straight back.

    ``control``: the worker's control channel, if any; a burst of items stops when a message
    waits there, so the command is applied before the next item.
    """

    name = "queue"

    def __init__(
        self, consumer: Consumer, processor: ItemProcessor, poll_max: float, control: ControlChannel | None = None
    ) -> None:
        self.consumer = consumer
        self.control = control
        self.processor = processor
        self.poll_max = poll_max
        self._interval = POLL_MIN
        self._due = 0.0
        self._failing = False  # the last poll raised: the backend is down

    def filenos(self) -> list[int]:
        return self.consumer.filenos()

    def timeout(self) -> float:
        return self._due - time.monotonic()

    def poll(self) -> bool:
        try:
            self.consumer.drain_wakeups()
            delivery = self.consumer.fetch()
            run = self.count_redelivery(delivery) if delivery is not None and delivery.redelivered else delivery
            if run is not None:
                self.processor.process(run, self.consumer)
        except QueueError as exc:
            # The backend is down: back off to the cap and try again; never die of it.  An item
            # whose settling failed stays claimed and comes back (at-least-once).
            log.error("queue backend failed, retrying in %.1fs: %s", self.poll_max, exc)
            self._failing = True
            self._interval = self.poll_max
            self._due = time.monotonic() + self._interval
            return False
        self._failing = False
        if delivery is None:
            self._due = time.monotonic() + self._interval
            self._interval = min(self.poll_max, self._interval * 2)
            return False
        self._interval = POLL_MIN
        self._due = 0.0
        return True

    def busy(self) -> bool:
        """A backend out of reach is not an idle one: --idle-exit waits until it answers."""
        return self._failing or not self.consumer.reachable()

    def count_redelivery(self, delivery: Delivery) -> Delivery | None:
        """A redelivered item's worker died (or its connection did) holding it: that was an attempt.

        The count must live in the message, not in this process, so the item is not run: a copy
        with the attempt raised replaces it, at once (a retry with no delay, written with other
        settlements).  That copy then runs, or is dead-lettered by the processor's rule for an
        attempt beyond the last (the previous one never finished).  Returns None.

        Except while the backend refuses re-sends (a full broker: :meth:`Consumer.counts_in_place`):
        a copy would be held there with its original unacked, the prefetch window would fill with
        such originals, and no ACK would ever free the broker's room.  Then the attempt is counted
        here and the item returned to run at once; a crash during that run loses the count (the
        item may get one attempt more than ``max_retries``), never the item.
        """
        error = delivery.error or _REDELIVERED
        if self.consumer.counts_in_place():
            log.warning("id=%s redelivered: counted as attempt %d, run in place", delivery.id, delivery.attempt + 1)
            return dataclasses.replace(delivery, attempt=delivery.attempt + 1, error=error, redelivered=False)
        self.consumer.retry(delivery, 0.0, error)
        log.warning("id=%s redelivered: counted as attempt %d", delivery.id, delivery.attempt)
        return None

    def more(self) -> bool:
        # Not past a control message: it is applied between items, before the next one.
        return self._due == 0.0 and not (self.control is not None and self.control.pending())

    def stop(self) -> None:
        self.consumer.close()
