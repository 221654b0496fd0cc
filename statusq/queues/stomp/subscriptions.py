"""Frames in, and the names destinations go by on the broker, for a :class:`~statusq.queues.stomp.link.StompLink`.

Apart from connecting, sending and receipts because this is the receiving end, and the names it
receives under: the subscriptions the link keeps (stomp.py keeps none; each new connection replays
them); the broker's name for a destination (RabbitMQ refuses '/' in a queue name), with the map
back so a frame reports the destination subscribed to; the queue arguments every frame to a
destination carries; and the receiver thread's hand-off, each MESSAGE queued and the owner's loop
woken through a pipe at once (a slow handler must not stall the thread that answers heartbeats).
A mixin, not an object of its own: the link's connect replays the subscriptions, and its SENDs use
the same names and arguments.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from statusq.config import StompConfig
from statusq.queues.stomp.delays import queue_declare_args, site_queue_args
from statusq.queues.stomp.destinations import rabbitmq_name
from statusq.wakeup import WakePipe


@dataclass(slots=True)
class Frame:
    """A received MESSAGE, as the receiver thread hands it over (not frozen: a frozen dataclass
    costs a ``object.__setattr__`` per field, in the thread every frame passes through)."""

    generation: int
    headers: dict[str, str]
    body: bytes
    #: When a consumer first saw it waiting (statusq.queues.stomp.consumer.give_back_waiting).
    seen: float = 0.0


@dataclass(frozen=True, slots=True)
class Subscription:
    """One SUBSCRIBE, kept to be sent again on every new connection."""

    destination: str
    id: str
    ack: str
    headers: dict[str, str]


class Subscriptions:
    """The receiving half of :class:`~statusq.queues.stomp.link.StompLink`."""

    # The link's own, set in its __init__ and its other mixins: what receiving reads.
    config: StompConfig
    flavor: str
    generation: int
    _require: Callable[[], Any]
    _translated: Callable[[str], contextlib.AbstractContextManager[None]]

    if TYPE_CHECKING:  # the link's property (connecting.py): read here, never written

        @property
        def connected(self) -> bool: ...

    def _start_subscriptions(self) -> None:
        """No subscription, no frame yet."""
        self.frames: queue.SimpleQueue[Frame] = queue.SimpleQueue()
        self._subscriptions: list[Subscription] = []
        self._sub_count = 0
        self._logical: dict[str, str] = {}
        self._wakeup = WakePipe()

    # -- the receiver thread's side: record and wake, never raise -------------------------------

    def _wake(self) -> None:
        # One byte per wake-up, not per frame (WakePipe): each syscall here hands the GIL to the
        # worker's thread and back, which at 10,000 frames a second is most of the cost.
        self._wakeup.wake()

    def on_message(self, frame: Any) -> None:
        body = frame.body if isinstance(frame.body, bytes) else str(frame.body or "").encode()
        headers = frame.headers  # a dict stomp.py parsed for this frame alone: ours now
        if self._logical and "destination" in headers:
            headers["destination"] = self._logical.get(headers["destination"], headers["destination"])
        self.frames.put(Frame(self.generation, headers, body))
        self._wake()

    # -- the owner's side -------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def drain_wakeups(self) -> None:
        if self._wakeup.pending:
            self._wakeup.drain()

    def physical(self, destination: str) -> str:
        """The broker's name for a destination.  RabbitMQ refuses '/' inside a queue name, so
        ``/queue/statusq/main/distrib`` becomes ``/queue/statusq.main.distrib`` there; the map
        back is kept, so frames report the destination we subscribed to."""
        if self.flavor != "rabbitmq":
            return destination
        name = rabbitmq_name(destination)
        if name != destination:
            self._logical[name] = destination
        return name

    def declaring(self, destination: str, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the queue arguments a frame to ``destination`` must carry (RabbitMQ
        queues: ``x-queue-type``, ``x-max-priority``; see :func:`~statusq.queues.stomp.delays.queue_declare_args`)."""
        args = self.queue_args(destination, headers)
        return {**headers, **args} if args else headers

    def queue_args(self, destination: str, headers: dict[str, str]) -> dict[str, str]:
        """The queue arguments alone (they depend on ``headers`` only through ``x-message-ttl``)."""
        config = self.config
        args = queue_declare_args(
            self.flavor,
            destination,
            headers,
            basename=config.basename,
            dead_letter=config.dead_letter_destination,
            control=config.control_channel,
            max_priority=config.max_priority,
            queue_type=config.queue_type,
        )
        if self.flavor == "rabbitmq" and "x-message-ttl" not in headers:
            args.update(
                site_queue_args(destination, basename=config.basename, hold=config.hot_hold, physical=self.physical)
            )
        return args

    def subscribe(self, destination: str, ack: str = "client-individual", headers: dict[str, str] | None = None) -> str:
        self._sub_count += 1  # not the list's length: a subscription may have been removed
        sub = Subscription(destination, f"sub-{self._sub_count - 1}", ack, dict(headers or {}))
        self._subscriptions.append(sub)
        if self.connected:
            self._send_subscribe(sub)
        return sub.id

    def unsubscribe(self, sub_id: str) -> None:
        """Forget a subscription (not replayed on a reconnect) and end it on the broker."""
        self._subscriptions = [s for s in self._subscriptions if s.id != sub_id]
        if self.connected:
            with self._translated("UNSUBSCRIBE"):
                self._require().unsubscribe(sub_id)

    def _send_subscribe(self, sub: Subscription) -> None:
        with self._translated("SUBSCRIBE"):
            headers = self.declaring(sub.destination, sub.headers)
            self._require().subscribe(self.physical(sub.destination), sub.id, ack=sub.ack, headers=headers)
