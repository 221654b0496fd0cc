#!/usr/bin/env python3
"""What a STOMP transaction that a full ActiveMQ refused keeps on the broker (issue 18).

ActiveMQ answers a SEND of a transaction that finds the store full with an ERROR, marks the
transaction rollback-only, and answers its COMMIT with "COMMIT FAILED: Transaction marked
rollback only", keeping the connection.  Each scenario: BEGIN, ``--taken`` SENDs the broker takes
(no receipts, as statusq's on ActiveMQ), the store filled from another connection, one more SEND
of the transaction (refused), COMMIT (refused); then the queues drained, and with the probe's
connection still open: (a) store and memory usage and the KahaDB journal files, (b) a new
transaction and a plain SEND on that connection, (c) an ABORT of the refused transaction and the
usage after it, (d) the usage once the connection is closed.  The broker's WARN lines at the end.

A private broker (3 MB store in 1 MB journal files, 2 MB memory: the limits of
tests/e2e/test_broker_full.py) on ports 61695/61696 with a fresh store; about 90 s.

Usage: PYTHONPATH=. bench/failed_transaction.py [--taken 20 0] [--stomp-port 61695] [--openwire-port 61696]
"""

from __future__ import annotations

import argparse
import queue
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import stomp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.activemq_stats import broker_usage, memory_holders
from tests.stomp import PrivateActiveMQ, drain

PAD = b"x" * 20_000
LIMITS = {
    "ACTIVEMQ_STORE_LIMIT": "3 mb",
    "ACTIVEMQ_JOURNAL_FILE": "1mb",
    "ACTIVEMQ_MEMORY_LIMIT": "2 mb",
    "ACTIVEMQ_TEMP_LIMIT": "64 mb",
    "ACTIVEMQ_SEND_FAIL_MS": "1000",
    "ACTIVEMQ_STORE_CLEANUP_MS": "1000",
}


class Probe:
    """A raw STOMP connection that records every RECEIPT and ERROR it gets."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.frames: queue.SimpleQueue[tuple[str, dict[str, str], bytes]] = queue.SimpleQueue()
        probe = self

        class Listener(stomp.ConnectionListener):  # type: ignore[misc]
            def on_receipt(self, frame: Any) -> None:
                probe.frames.put(("RECEIPT", dict(frame.headers), b""))

            def on_error(self, frame: Any) -> None:
                probe.frames.put(("ERROR", dict(frame.headers), frame.body or b""))

            def on_disconnected(self) -> None:
                probe.frames.put(("DISCONNECTED", {}, b""))

        self.conn = stomp.Connection12([("127.0.0.1", port)], auto_decode=False, heartbeats=(0, 0))
        self.conn.set_listener("probe", Listener())
        self.conn.connect("guest", "guest", wait=True)

    def answer(self, receipt: str, timeout: float = 15.0, quiet: bool = False) -> tuple[str, str]:
        """The RECEIPT or ERROR answering ``receipt`` (others seen meanwhile are printed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                kind, headers, _ = self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if headers.get("receipt-id") == receipt:
                return kind, headers.get("message", "")
            if quiet and kind == "ERROR":  # a fence: the ERROR of the SEND before it
                self.answer(receipt, timeout, quiet=False)
                return kind, headers.get("message", "")
            print(f"    [{self.name}] other frame: {kind} {headers.get('message', '')!r}")
            if kind == "DISCONNECTED":
                return kind, ""
        return "NOTHING", f"no answer within {timeout:g}s"

    def others(self, wait: float = 0.5) -> list[str]:
        time.sleep(wait)
        seen = []
        while True:
            try:
                kind, headers, _ = self.frames.get_nowait()
            except queue.Empty:
                return seen
            seen.append(f"{kind} {headers.get('message', '')!r} receipt-id={headers.get('receipt-id', '-')}")

    def send(self, destination: str, body: bytes, tx: str | None = None) -> tuple[str, str]:
        receipt = uuid.uuid4().hex
        headers = {"receipt": receipt, "persistent": "true"}
        if tx:
            headers["transaction"] = tx
        self.conn.send(destination, body, headers=headers)
        return self.answer(receipt)

    def fence(self) -> tuple[str, str]:
        """A non-persistent SEND to a topic nobody reads, with a receipt: the broker answers the
        connection's frames in order, so an ERROR for an earlier SEND comes before it."""
        receipt = uuid.uuid4().hex
        self.conn.send("/topic/failedtx.fence", b"", headers={"receipt": receipt, "persistent": "false"})
        kind, message = self.answer(receipt, quiet=True)
        return kind, message

    def frame(self, command: str, tx: str) -> tuple[str, str]:
        receipt = uuid.uuid4().hex
        {"BEGIN": self.conn.begin, "COMMIT": self.conn.commit, "ABORT": self.conn.abort}[command](
            tx, headers={"receipt": receipt}
        )
        return self.answer(receipt)

    @property
    def connected(self) -> bool:
        return bool(self.conn.is_connected())

    def close(self) -> None:
        if self.conn.is_connected():
            self.conn.disconnect()


def usage(broker: PrivateActiveMQ, store: Path, settle: float = 4.0) -> str:
    """Store and memory usage (bytes and percent) after ``settle`` s (KahaDB frees drained
    journal files every second here), and the journal files on disk."""
    time.sleep(settle)
    found = broker_usage(broker.stomp_port)
    journals = sorted(p.name for p in store.glob("db-*.log"))
    holders = memory_holders(broker.stomp_port)
    return (
        f"store {found.get('storeUsage')} B ({found.get('storePercentUsage')}%), "
        f"memory {found.get('memoryUsage')} B ({found.get('memoryPercentUsage')}%), "
        f"messages {found.get('size')}, journal files {journals}, memory holders {holders}"
    )


def fill(probe: Probe, destination: str, limit: int = 1000) -> int:
    """Plain SENDs with receipts until the broker refuses one; how many it took."""
    for n in range(limit):
        kind, message = probe.send(destination, PAD)
        if kind != "RECEIPT":
            print(f"  fill: refused after {n} accepted: {kind} {message!r}")
            return n
    return limit


def refused_transaction(
    broker: PrivateActiveMQ, store: Path, probe: Probe, filler: Probe, destination: str, taken: int
) -> str:
    """BEGIN, ``taken`` SENDs the broker takes, then (the store filled meanwhile by ``filler``)
    one it refuses, COMMIT: the transaction's name.  The SENDs ask for no receipt, as statusq's
    on ActiveMQ: a refused one marks the transaction rollback-only.  (With a receipt, ActiveMQ
    answers the refused SEND alone and the COMMIT takes what was accepted.)"""
    tx = uuid.uuid4().hex
    print(f"  BEGIN: {probe.frame('BEGIN', tx)}")
    for _ in range(taken):
        probe.conn.send(destination, PAD, headers={"persistent": "true", "transaction": tx})
    print(f"  {taken} SENDs in the transaction, then a plain SEND: {probe.send(destination + '.fence', b'')}")
    print(f"  with them: {usage(broker, store, 0.5)}")
    fill(filler, destination + ".filler")
    probe.conn.send(destination, PAD, headers={"persistent": "true", "transaction": tx})
    print(f"  one more SEND in the transaction: {probe.fence()}")
    print(f"  COMMIT: {probe.frame('COMMIT', tx)}")
    print(f"  connected after the refused COMMIT: {probe.connected}")
    return tx


def scenario(broker: PrivateActiveMQ, store: Path, taken: int) -> None:
    queue_name = f"/queue/failedtx.{uuid.uuid4().hex[:8]}"
    print(f"\n== a transaction of {taken} SENDs taken, then one refused (the store filled meanwhile)")
    print(f"  empty: {usage(broker, store, 0.5)}")
    filler = Probe(broker.stomp_port, "filler")
    probe = Probe(broker.stomp_port, "probe")
    tx = refused_transaction(broker, store, probe, filler, queue_name, taken)
    print(f"  other frames: {probe.others()}")
    print(f"  after the refusal: {usage(broker, store, 0.5)}")
    drained = sum(len(drain(broker.stomp_port, queue_name + s, seconds=2.0)) for s in ("", ".fence", ".filler"))
    print(f"  drained {drained} message(s)")
    print(f"  (a) drained, the failed transaction's connection open: {usage(broker, store)}")
    control = Probe(broker.stomp_port, "control")
    print(f"  control connection, a plain SEND: {control.send(queue_name + '.control', b'small')}")
    print("  (b) a new transaction on the same connection: ", end="")
    tx2 = uuid.uuid4().hex
    print(probe.frame("BEGIN", tx2), probe.send(queue_name + ".tx2", b"small", tx2), probe.frame("COMMIT", tx2))
    print(f"      a plain SEND on it: {probe.send(queue_name + '.plain', b'small')}")
    print(f"  after (b): {usage(broker, store)}")
    print(f"  (c) ABORT of the failed transaction: {probe.frame('ABORT', tx)}; connected: {probe.connected}")
    print(f"      other frames: {probe.others()}")
    print(f"  after the ABORT: {usage(broker, store)}")
    if probe.connected:
        print(f"      a plain SEND after the ABORT: {probe.send(queue_name + '.plain', b'small')}")
    probe.close()
    print(f"  (d) the connection closed: {usage(broker, store)}")
    for probe_ in (filler, control):
        probe_.close()
    for suffix in ("", ".control", ".tx2", ".plain"):
        drain(broker.stomp_port, queue_name + suffix, seconds=1.0)
    print(f"  everything drained and closed: {usage(broker, store)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stomp-port", type=int, default=61695)
    parser.add_argument("--openwire-port", type=int, default=61696)
    parser.add_argument("--taken", type=int, nargs="+", default=[20, 0], help="SENDs taken before the refused one")
    parser.add_argument("--keep", action="store_true", help="leave the broker and its store running")
    args = parser.parse_args()
    store = Path(tempfile.mkdtemp(prefix="failed-tx-store-"))
    broker = PrivateActiveMQ("failedtx", args.stomp_port, args.openwire_port, store, LIMITS)
    log = broker.base / "log"
    broker.start()
    try:
        for taken in args.taken:
            scenario(broker, store, taken)
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        print(f"\n== the broker's log ({log}), WARN/ERROR lines:")
        for line in lines:
            if " WARN " in line or " ERROR " in line or "ransaction" in line:
                print("  " + line[:300])
    finally:
        if not args.keep:
            broker.kill()
            shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
