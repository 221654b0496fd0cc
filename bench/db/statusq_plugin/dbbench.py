"""statusq's handler for the database bench: the peer bench's sync handler alone.

Alone, because a worker with an async handler registered runs every item through its
concurrent listener (a thread pool and an event loop), and a user whose handlers are all plain
functions does not: the bench measures the shape that user gets.  PgQueuer's side runs its own
(async) way.
"""

from __future__ import annotations

import time

import tally  # bench/peers, on PYTHONPATH (the driver puts it there)

from statusq import PluginApi, QueueHandler, QueueItem


class Work(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        started = time.time()
        payload = item.payload
        tally.record(payload["i"], payload["sent"], started)
        return True


def register(api: PluginApi) -> None:
    api.register_handler("peer_work", Work)
