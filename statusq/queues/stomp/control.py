"""A worker's control channel on STOMP: a connection of its own, subscribed to the control topic.

Not on the consumer's connection: there a command waited in the consumer's turns and behind the
frames the receiver thread had queued, and the consumer read it for the control manager.  Here
the control manager reads it directly; the queue listener asks :meth:`pending` between items.
"""

from __future__ import annotations

import math

from statusq.config import StompConfig
from statusq.queues.base import ControlChannel, ControlMessage
from statusq.queues.stomp.link import StompLink
from statusq.queues.stomp.redial import Redial


class StompControlChannel(ControlChannel):
    def __init__(self, config: StompConfig, destination: str) -> None:
        self.link = StompLink(config, "control")
        self.link.subscribe(destination, "auto")  # a lost command is not worth a redelivery
        self._redial = Redial(self.link, config, "control channel")
        self._redial.connect()

    def filenos(self) -> list[int]:
        return [self.link.fileno()]  # readable on a frame, and when the connection drops

    def drain_wakeups(self) -> None:
        self.link.drain_wakeups()

    def pending(self) -> bool:
        return not self.link.frames.empty()

    def timeout(self) -> float:
        if self.pending():
            return 0.0
        return math.inf if self.link.connected else self._redial.due_in()

    def take(self) -> list[ControlMessage]:
        if not self.link.connected:
            self._redial.connect()
        taken = []
        frames = self.link.frames
        while not frames.empty():
            frame = frames.get_nowait()
            if frame.generation == self.link.generation:
                taken.append((frame.headers, frame.body))
        return taken

    def close(self) -> None:
        self.link.close()
