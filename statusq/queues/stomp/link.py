"""One STOMP connection, with the care stomp.py leaves to its users.

- Frames are handed off stomp.py's receiver thread at once (a queue and a wake-up pipe): a slow
  handler must not stall the thread that answers heartbeats, and an exception in a listener
  callback would end that thread for good.
- Every wait has a timeout: receipts, connects.
- Settlements (acks, and the transactions of re-sends) are written by one thread of the
  consumer's (:mod:`statusq.queues.stomp.settler`) through :meth:`StompLink.write_acks` and
  :meth:`StompLink.commit_resends`; stomp.py writes each frame whole under its socket semaphore,
  and frames of a transaction carry its name, so other frames may come between them.
- stomp.py neither reconnects nor resubscribes after a drop: :meth:`StompLink.connect` builds a
  fresh connection (trying the servers in order: failover) and replays the subscriptions.  Each
  connection has a generation number, so an ack for a frame of an older connection is dropped
  (the broker redelivers that frame anyway).

:class:`StompLink` is put together from one mixin per job, each in a module of its own; mixins,
not objects, because the jobs share one connection's state (each declares what it borrows from
the others at the top of its class):

- :mod:`~statusq.queues.stomp.connecting`: connecting, failover, the cause of a failed connect,
  closing without leaving stomp.py's thread behind;
- :mod:`~statusq.queues.stomp.receipts`: the broker's answers: receipts waited for or looked
  at later, ERROR frames, a full broker's refusals;
- :mod:`~statusq.queues.stomp.sending`: SENDs, batches and transactions, the settlement writer's
  ACKs and re-sends;
- :mod:`~statusq.queues.stomp.subscriptions`: subscriptions, the broker's names for
  destinations, frames handed off the receiver thread.

Here: the state they all share, and stomp.py's exceptions translated.  :class:`Frame`,
:data:`Send` and :func:`encode_frame` are imported from here as they were before the split.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import stomp
from stomp.exception import StompException

from statusq.config import StompConfig
from statusq.errors import ConnectionClosed, QueueError
from statusq.queues.stomp.connecting import Connecting
from statusq.queues.stomp.encode import encode_frame
from statusq.queues.stomp.receipts import Receipts
from statusq.queues.stomp.sending import Send, Sending
from statusq.queues.stomp.subscriptions import Frame, Subscriptions

__all__ = ["Frame", "Send", "StompLink", "encode_frame"]


class StompLink(Connecting, Receipts, Sending, Subscriptions, stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self, config: StompConfig, name: str) -> None:
        self.config = config
        self.name = name
        self.generation = 0
        self.flavor = config.flavor if config.flavor != "auto" else "activemq"
        self._conn: Any = None
        self._write_lock = threading.Lock()  # one writer at a time against reconnects
        self._start_connecting()
        self._start_receipts()
        self._start_subscriptions()

    def _require(self) -> Any:
        if not self.connected:
            raise ConnectionClosed(f"{self.name}: not connected")
        return self._conn

    @contextlib.contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        try:
            yield
        except QueueError:
            raise
        except (StompException, OSError) as exc:
            raise ConnectionClosed(f"{self.name}: {what} failed: {exc!r}") from None
