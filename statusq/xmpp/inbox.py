"""What crosses from the XMPP thread to the master's: received messages, and a pipe to wake it."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from statusq.wakeup import WakePipe


@dataclass(frozen=True, slots=True)
class Inbound:
    """A chat message received for a site, as handed to the manager."""

    site: str
    sender: str  # bare JID: who it is
    from_jid: str  # full JID: where to answer
    to: str
    body: str
    id: str
    type: str

    def payload(self) -> dict[str, str]:
        """The ``xmppin`` item's payload."""
        return {"sender": self.sender, "from": self.from_jid, "to": self.to, "body": self.body, "id": self.id}


class Inbox:
    """Messages from the loop thread to the master's thread; a byte on a pipe wakes the master."""

    def __init__(self) -> None:
        self._items: collections.deque[Inbound] = collections.deque()
        self._wakeup = WakePipe()

    def put(self, message: Inbound) -> None:
        self._items.append(message)
        self._wakeup.wake()

    def fileno(self) -> int:
        return self._wakeup.fileno()

    def drain_wakeups(self) -> None:
        self._wakeup.drain()

    def peek(self) -> Inbound | None:
        return self._items[0] if self._items else None

    def pop(self) -> None:
        self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self._wakeup.close()  # idempotent: never closes a number the process has since reused
