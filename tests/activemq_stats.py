"""What a test's private ActiveMQ holds, asked from outside: its statistics plugin's answers (the
broker's usage, and every destination's memory, size and consumers) and its live heap.

For the tests that fill a broker (issue 18): when it stalls, which destination holds the memory
it would need to page messages in for dispatch is the first thing to know.
"""

from __future__ import annotations

import queue
import subprocess
from typing import Any

import stomp

from statusq.metrics.activemq import parse_map
from tests.stomp import raw_connection

END_LIST = "ActiveMQ.Statistics.Destination.List.End.With.Null"
BROKER_FIELDS = (
    "memoryPercentUsage",
    "storePercentUsage",
    "tempPercentUsage",
    "memoryUsage",
    "storeUsage",
    "size",
    "enqueueCount",
    "dequeueCount",
)
DESTINATION_FIELDS = ("memoryUsage", "memoryPercentUsage", "size", "inflightCount", "consumerCount", "dispatchCount")


def _ask(port: int, destination: str, headers: dict[str, str], ends: int) -> list[dict[str, object]]:
    """Send one statistics query; the answers until ``ends`` maps came (1 for the broker's,
    the end-of-list marker for a destination query)."""
    got: queue.SimpleQueue[bytes] = queue.SimpleQueue()

    class Listener(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            got.put(frame.body)

    conn = raw_connection(port)
    answers = []
    try:
        conn.set_listener("stats", Listener())
        conn.subscribe("/temp-queue/stats", "stats", headers={"transformation": "jms-map-json"})
        conn.send(destination, b"", headers={"reply-to": "/temp-queue/stats", **headers})
        while ends:
            answer = parse_map(got.get(timeout=10)) or {}
            if answer and len(answers) < 10_000:
                answers.append(answer)
            if not answer or destination.endswith("Broker"):
                ends -= 1
    finally:
        conn.disconnect()
    return answers


def broker_usage(port: int) -> dict[str, object]:
    """ActiveMQ.Statistics.Broker's answer: memory, store, temp usage (percent; memory and store
    in bytes too) and message counts."""
    found = _ask(port, "/queue/ActiveMQ.Statistics.Broker", {}, 1)[0]
    return {k: found.get(k) for k in BROKER_FIELDS}


def memory_holders(port: int, top: int = 8) -> list[dict[str, object]]:
    """The queues and topics that hold memory, most first (at most ``top``): each one's
    memoryUsage (bytes of messages it references: paged in, dispatched and not acked, in an
    open transaction), size, in-flight count and consumers."""
    found = _destinations(port, "queue") + _destinations(port, "topic")
    held = [f for f in found if int(str(f["memoryUsage"] or 0)) > 0]
    return sorted(held, key=lambda f: -int(str(f["memoryUsage"])))[:top]


def waiting(port: int, prefix: str) -> list[dict[str, object]]:
    """The queues under ``prefix`` holding messages: each one's size, in-flight count (dispatched,
    not acked), dispatch count and consumers.  What tells a stalled drain's two causes apart: a
    consumer whose window is full of what it holds (in-flight at its prefetch), or a broker that
    does not dispatch (consumers, nothing in flight)."""
    found = _destinations(port, "queue")
    return [f for f in found if str(f["name"]).startswith(prefix) and int(str(f["size"] or 0)) > 0]


def _destinations(port: int, kind: str) -> list[dict[str, object]]:
    """Every ``kind`` ("queue" or "topic") destination's name and :data:`DESTINATION_FIELDS`."""
    answers = _ask(port, f"/{kind}/ActiveMQ.Statistics.Destination.>", {END_LIST: ""}, 1)
    return [{"name": a.get("destinationName"), **{k: a.get(k) for k in DESTINATION_FIELDS}} for a in answers]


def live_heap(pid: int) -> str:
    """The top of ``jmap -histo:live`` (a full GC first), and the heap's size after it."""
    histo = subprocess.run(["jmap", "-histo:live", str(pid)], capture_output=True, text=True, timeout=120)
    lines = histo.stdout.splitlines()
    total = next((line for line in reversed(lines) if line.startswith("Total")), "Total ?")
    return "\n".join([*lines[:15], total])
