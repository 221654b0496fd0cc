"""In-memory doubles the unit tests share: a recording consumer, deliveries, plugin files."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from statusq.defaults import JSON_TYPE
from statusq.item import Delivery
from statusq.queues.base import Consumer


@dataclass
class RecordingConsumer(Consumer):
    """Hands out the deliveries it was given and records how each was settled."""

    pending: list[Delivery] = field(default_factory=list)
    acked: list[Delivery] = field(default_factory=list)
    retried: list[tuple[Delivery, float, str]] = field(default_factory=list)
    dead: list[tuple[Delivery, str]] = field(default_factory=list)
    closed: bool = False

    def fetch(self) -> Delivery | None:
        return self.pending.pop(0) if self.pending else None

    def ack(self, delivery: Delivery) -> None:
        self.acked.append(delivery)

    def retry(self, delivery: Delivery, delay: float, error: str) -> None:
        self.retried.append((delivery, delay, error))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self.dead.append((delivery, reason))

    def close(self) -> None:
        self.closed = True
        super().close()

    @property
    def settled(self) -> int:
        return len(self.acked) + len(self.retried) + len(self.dead)


def make_delivery(
    payload: Any = None,
    *,
    transport: str = "echo",
    site: str = "example.org",
    attempt: int = 1,
    body: bytes | None = None,
    content_type: str = JSON_TYPE,
    error: str | None = None,
    id: str = "item-1",
) -> Delivery:
    """A delivery as a backend would fetch it; ``payload`` is JSON-encoded unless ``body`` is given."""
    if body is None:
        import json

        body = json.dumps({} if payload is None else payload).encode()
    return Delivery(
        id=id,
        site=site,
        transport=transport,
        body=body,
        content_type=content_type,
        headers={"h": "v"},
        attempt=attempt,
        enqueued_at=time.time(),
        priority=7,
        error=error,
    )


def write_plugin(folder: Path, name: str, source: str, *, package: bool = False) -> Path:
    """Write a plugin as a module ``name.py`` or a package ``name/__init__.py`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name / "__init__.py" if package else folder / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def handler_plugin(transport: str, *, group: str = "main", cls: str = "Handler") -> str:
    """The source of a plugin registering a do-nothing handler for ``transport``."""
    return f"""
        from statusq import QueueHandler

        class {cls}(QueueHandler):
            def handle(self, item):
                return True

        def register(api):
            api.register_handler({transport!r}, {cls}, group={group!r})
        """


class FakeClock:
    """A clock that moves only when told (``advance``); pass it where a ``time.time`` goes."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
