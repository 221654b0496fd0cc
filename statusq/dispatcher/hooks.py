"""What workers tell the dispatcher: which run's item is in hand, and how it ended.

The dispatcher marks each item it enqueues with three headers; :class:`DispatchHooks`, one of
the worker's item hooks, turns them into accounting.  An item's "last processed" time is written
only when its handler *succeeded*, so a site whose cron keeps failing stays at the front of the
line instead of being counted as done.  Items without the headers cost a dictionary lookup.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from statusq.errors import QueueError
from statusq.item import Delivery
from statusq.middleware import Middleware
from statusq.outcome import Outcome, Result

if TYPE_CHECKING:
    from statusq.dispatcher.store import DispatchStore

log = logging.getLogger(__name__)

#: Headers on every item the dispatcher enqueues (not ``statusq-*``: brokers' user headers).
HEADER_QUEUE = "dispatch-queue"
HEADER_RUN = "dispatch-run"
HEADER_KEY = "dispatch-key"


class RunItem(NamedTuple):
    queue: str
    seq: int
    key: str


def run_item(delivery: Delivery) -> RunItem | None:
    """The run a delivery belongs to, or None for ordinary items (and forged, malformed headers)."""
    headers = delivery.headers
    queue = headers.get(HEADER_QUEUE)
    if queue is None:
        return None
    run, key = headers.get(HEADER_RUN, ""), headers.get(HEADER_KEY)
    if not run.isdigit() or not key:
        return None
    return RunItem(queue, int(run), key)


class DispatchHooks(Middleware):
    """Records run progress and per-item success in the dispatcher's tables.

    The store is opened, and SQLAlchemy imported, on the first dispatched item, so a worker that
    never sees one never connects and stays ~10 MB smaller (a STOMP worker needs no SQL at all).
    A database error is logged in one line and the item goes on: accounting must never
    fail work.
    """

    def __init__(self, db_url: str, *, clock: Callable[[], float] = time.time) -> None:
        self.db_url = db_url
        self.clock = clock
        self._store: DispatchStore | None = None

    @property
    def store(self) -> DispatchStore:
        if self._store is None:
            # Local: SQLAlchemy, only once a dispatched item is seen (a STOMP worker may never).
            from statusq.dispatcher.store import DispatchStore  # noqa: PLC0415

            self._store = DispatchStore(self.db_url)
        return self._store

    def before_item(self, delivery: Delivery) -> None:
        mark = run_item(delivery)
        if mark is None:
            return
        try:
            self.store.item_started(mark.queue, mark.seq, mark.key)
        except QueueError as exc:
            log.warning("queue %s run %d: cannot record item %s started: %s", *mark, exc)

    def after_item(self, delivery: Delivery, result: Result) -> None:
        mark = run_item(delivery)
        if mark is None or result.outcome in (Outcome.RETRY, Outcome.HOLD):  # still the run's business
            return
        try:
            self.store.items_settled([(*mark, result.outcome is Outcome.DONE)], self.clock())
        except QueueError as exc:
            log.warning("queue %s run %d: cannot record item %s %s: %s", *mark, result.outcome.value, exc)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
