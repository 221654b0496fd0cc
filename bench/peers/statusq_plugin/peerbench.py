"""statusq's handlers for the peer bench: the same work as Celery's task and Dramatiq's actor.

"peer_work" is a sync handler; "peer_async" the same work as an ``async def`` handle, which
statusq awaits only where it supports async handlers (elsewhere the coroutine is never run, and
the driver's probe, which counts what was recorded, finds that out).
"""

from __future__ import annotations

import asyncio
import os
import time

import tally  # bench/peers, on PYTHONPATH (the driver puts it there)

from statusq import PluginApi, QueueHandler, QueueItem


class Work(QueueHandler):
    def handle(self, item: QueueItem) -> bool:
        started = time.time()
        payload = item.payload
        if payload["sleep"]:
            time.sleep(payload["sleep"])
        tally.record(payload["i"], payload["sent"], started)
        return True


class AsyncWork(QueueHandler):
    async def handle(self, item: QueueItem) -> bool:  # type: ignore[override]
        started = time.time()
        payload = item.payload
        if payload["sleep"]:
            await asyncio.sleep(payload["sleep"])
        tally.record(payload["i"], payload["sent"], started)
        return True


def register(api: PluginApi) -> None:
    # Only the row's own handler ($PEERS_TRANSPORT, set by the driver): a worker with an async
    # handler registered runs every item on its concurrent path (a thread or a task per item),
    # which a one-item-at-a-time row of sync handlers must not pay for (4,777/s against 8,000).
    wanted = os.environ.get("PEERS_TRANSPORT")
    if wanted in (None, "peer_work"):
        api.register_handler("peer_work", Work)
    if wanted in (None, "peer_async"):
        api.register_handler("peer_async", AsyncWork)
