"""Ganglia: the daemon's figures sent to a ``gmond`` as ``gmetric`` would send them.

We speak gmetric's wire format (Ganglia 3.1+, XDR over UDP; ``lib/gm_protocol.x``) instead of
running the ``gmetric`` binary once per figure: one process and one socket per run, no config
file to write for it, and nothing to install on a host that only sends. Each figure goes as a
metadata packet (name, type, units, slope, tmax, dmax, group) followed by its value as a string,
which is what ``gmetric`` sends; gmond drops a value whose metadata it has not seen.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from statusq.metrics.scrape import Samples
from statusq.metrics.snmp import per_transport, totals

GMETADATA_FULL = 128
GMETRIC_STRING = 133
SLOPES = {"zero": 0, "positive": 1, "negative": 2, "both": 3, "unspecified": 4}
GROUP = "statusq"
DEFAULT_PORT = 8649


@dataclass(frozen=True, slots=True)
class GMetric:
    name: str
    value: float
    type: str  # gmond's: "uint32", "double", ...
    units: str
    slope: str  # "positive" for counters: gmetad stores them as rates
    description: str

    def text(self) -> str:
        if self.type == "uint32":
            return str(max(0, int(self.value)))
        return repr(float(self.value)) if not float(self.value).is_integer() else str(int(self.value))


def _counter(name: str, value: float, description: str, units: str = "items") -> GMetric:
    return GMetric(name, value, "double", units, "positive", description)


def _gauge(name: str, value: float, units: str, description: str) -> GMetric:
    return GMetric(name, value, "uint32", units, "both", description)


def safe_name(text: str) -> str:
    """Transport names go into metric names, which gmetad also uses as RRD file names."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def figures(samples: Samples | None, now: float) -> list[GMetric]:
    """What one run sends: ``statusq_up``, the totals and the per-transport counters.

    Nothing but ``statusq_up = 0`` when the daemon could not be read, so a graph shows the
    outage instead of the last values repeated.
    """
    up = GMetric("statusq_up", 0 if samples is None else 1, "uint32", "", "both", "1 when /metrics could be read")
    if samples is None:
        return [up]
    t = totals(samples, now)
    found = [
        up,
        _counter("statusq_handled", t.handled, "items settled as handled"),
        _counter("statusq_retried", t.retried, "attempts put back for a retry"),
        _counter("statusq_dead_lettered", t.dead_lettered, "items moved to the dead letters"),
        _counter("statusq_errors", t.errors, "failed attempts"),
        _counter("statusq_worker_restarts", t.worker_restarts, "workers replaced", "restarts"),
        _gauge("statusq_workers", t.workers_alive, "workers", "worker processes"),
        _gauge("statusq_workers_expected", t.workers_expected, "workers", "workers the supervisor keeps"),
        _gauge("statusq_in_flight", t.in_flight, "items", "items being handled now"),
        _gauge("statusq_backlog_ready", t.backlog_ready, "items", "items waiting to be handled now"),
        _gauge("statusq_backlog_delayed", t.backlog_delayed, "items", "items waiting for a retry"),
        _gauge("statusq_dead_letters", t.dead_letters, "items", "items in the dead letters"),
        _gauge("statusq_hung_queues", t.dispatch_hung, "queues", "dispatch queues past their timeout"),
    ]
    if t.last_handled_age is not None:
        age = round(t.last_handled_age, 3)
        found.append(GMetric("statusq_last_handled_age", age, "double", "seconds", "both", "since an item was handled"))
    for row in per_transport(samples):
        name = safe_name(row.transport)
        found.append(_counter(f"statusq_handled_{name}", row.handled, f"{row.transport} items handled"))
        found.append(_counter(f"statusq_retried_{name}", row.retried, f"{row.transport} attempts retried"))
        found.append(_counter(f"statusq_dead_lettered_{name}", row.dead_lettered, f"{row.transport} dead lettered"))
    return found


def _xdr_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">I", len(raw)) + raw + b"\0" * (-len(raw) % 4)


def _metric_id(host: str, name: str) -> bytes:
    return _xdr_string(host) + _xdr_string(name) + struct.pack(">I", 0)  # spoof: no


def encode_metadata(metric: GMetric, host: str, tmax: int, dmax: int) -> bytes:
    extra = [("GROUP", GROUP), ("DESC", metric.description), ("TITLE", metric.name)]
    return b"".join(
        [
            struct.pack(">I", GMETADATA_FULL),
            _metric_id(host, metric.name),
            _xdr_string(metric.type),
            _xdr_string(metric.name),
            _xdr_string(metric.units),
            struct.pack(">III", SLOPES[metric.slope], tmax, dmax),
            struct.pack(">I", len(extra)),
            *(_xdr_string(key) + _xdr_string(value) for key, value in extra),
        ]
    )


def encode_value(metric: GMetric, host: str) -> bytes:
    return (
        struct.pack(">I", GMETRIC_STRING)
        + _metric_id(host, metric.name)
        + _xdr_string("%s")
        + _xdr_string(metric.text())
    )


def send(
    metrics: Iterable[GMetric],
    address: tuple[str, int],
    *,
    host: str | None = None,
    tmax: int = 60,
    dmax: int = 0,
) -> int:
    """Send every metric to gmond's ``udp_recv_channel``; the number sent.

    ``host`` is only a label in the packet: gmond files an unspoofed metric under the sender's
    address, as it does ``gmetric``'s.
    """
    host = host or socket.gethostname()
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    count = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for metric in metrics:
            sock.sendto(encode_metadata(metric, host, tmax, dmax), address)
            sock.sendto(encode_value(metric, host), address)
            count += 1
    return count
