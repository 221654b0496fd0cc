"""STATUSQ-MIB over net-snmp's ``pass_persist``: the daemon's ``/metrics`` as an OID tree.

snmpd owns the network side (communities, views, the listening address); this module only
answers snmpd's questions on stdin/stdout. Writing an agent of our own would mean owning SNMP
security too. The figures are computed from one scrape of ``/metrics`` (``Totals`` is shared
with the nagios check and gmetric, so the three exporters agree on what "backlog" means); a scrape
is reused for ``cache_seconds`` because one ``snmpwalk`` asks dozens of ``getnext`` in a row and
must see one consistent state.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from statusq.metrics.scrape import Samples, ScrapeError

log = logging.getLogger(__name__)

Oid = tuple[int, ...]
# 1.3.6.1.3 is `experimental`; 9464 is no IANA assignment (see conf/STATUSQ-MIB.txt).
BASE_OID: Oid = (1, 3, 6, 1, 3, 9464)
COUNTER64_MAX = 2**64 - 1
GAUGE32_MAX = 2**32 - 1
INTEGER32_MAX = 2**31 - 1
MAX_INDEX_NAME = 64  # DisplayString (SIZE (1..64)) in the MIB


@dataclass(frozen=True, slots=True)
class Totals:
    """The headline figures over every site and transport, as the MIB's scalars define them."""

    handled: float
    retried: float
    dead_lettered: float
    errors: float
    workers_alive: float
    workers_expected: float
    in_flight: float
    backlog_ready: float
    backlog_delayed: float
    dead_letters: float
    last_handled_age: float | None  # None: nothing handled since the daemon started
    worker_restarts: float
    dispatch_hung: float

    @property
    def backlog(self) -> float:
        """Items waiting, now or after a retry's delay: what a stuck or paused daemon piles up."""
        return self.backlog_ready + self.backlog_delayed

    @property
    def workers_down(self) -> float:
        return max(0.0, self.workers_expected - self.workers_alive)


def totals(samples: Samples, now: float) -> Totals:
    """``now`` is wall-clock time, as the daemon's ``last_handled_timestamp_seconds`` is."""
    stamps = [s.value for s in samples.select("statusq_last_handled_timestamp_seconds")]
    last = max(stamps, default=0.0)
    return Totals(
        handled=samples.sum("statusq_items_total", outcome="handled"),
        retried=samples.sum("statusq_items_total", outcome="retried"),
        dead_lettered=samples.sum("statusq_items_total", outcome="dead_lettered"),
        errors=samples.sum("statusq_item_errors_total"),
        workers_alive=samples.sum("statusq_workers"),
        workers_expected=samples.sum("statusq_workers_expected"),
        in_flight=samples.sum("statusq_items_in_flight"),
        backlog_ready=samples.sum("statusq_backlog_items", state="ready"),
        backlog_delayed=samples.sum("statusq_backlog_items", state="delayed"),
        dead_letters=samples.sum("statusq_dead_letters"),
        # A gauge that was never set reads 0: the epoch is "never", not "55 years ago".
        last_handled_age=max(0.0, now - last) if last > 0 and math.isfinite(last) else None,
        worker_restarts=samples.sum("statusq_worker_restarts_total"),
        dispatch_hung=samples.sum("statusq_dispatch_hung"),
    )


@dataclass(frozen=True, slots=True)
class TransportFigures:
    transport: str
    handled: float
    retried: float
    dead_lettered: float


def per_transport(samples: Samples) -> list[TransportFigures]:
    """One row per transport that has settled an item (a counter series exists from then on)."""
    return [
        TransportFigures(
            transport=name,
            handled=samples.sum("statusq_items_total", transport=name, outcome="handled"),
            retried=samples.sum("statusq_items_total", transport=name, outcome="retried"),
            dead_lettered=samples.sum("statusq_items_total", transport=name, outcome="dead_lettered"),
        )
        for name in samples.label_values("statusq_items_total", "transport")
    ]


@dataclass(frozen=True, slots=True, order=True)
class Varbind:
    """One answer line triple of pass_persist: OID, net-snmp type name, value."""

    oid: Oid
    type: str
    value: int

    def render(self) -> str:
        return f"{format_oid(self.oid)}\n{self.type}\n{self.value}\n"


def format_oid(oid: Oid) -> str:
    return "." + ".".join(str(part) for part in oid)


def parse_oid(text: str) -> Oid:
    """``.1.3.6`` or ``1.3.6``; anything else is a ValueError."""
    return tuple(int(part) for part in text.strip().strip(".").split(".") if part != "")


def _whole(value: float, low: int, high: int) -> int:
    """Round down into an SNMP type's range; NaN (a series the daemon could not compute) is 0."""
    if math.isnan(value):
        return 0
    if math.isinf(value):
        return high if value > 0 else low
    return min(high, max(low, math.floor(value)))


def counter64(oid: Oid, value: float) -> Varbind:
    return Varbind(oid, "counter64", _whole(value, 0, COUNTER64_MAX))


def gauge32(oid: Oid, value: float) -> Varbind:
    return Varbind(oid, "gauge", _whole(value, 0, GAUGE32_MAX))


def integer32(oid: Oid, value: float) -> Varbind:
    return Varbind(oid, "integer", _whole(value, -1, INTEGER32_MAX))


def name_index(name: str) -> Oid | None:
    """A DisplayString INDEX: its length, then one sub-identifier per byte (RFC 2578 §7.7)."""
    raw = name.encode("utf-8")
    if not 1 <= len(raw) <= MAX_INDEX_NAME:
        return None
    return (len(raw), *raw)


def mib_values(samples: Samples | None, now: float, base: Oid = BASE_OID) -> list[Varbind]:
    """Every object of STATUSQ-MIB for one scrape, in OID order; only ``statusqUp`` when down."""
    scalars = (*base, 1, 1)
    if samples is None:
        return [integer32((*scalars, 1, 0), 0)]
    t = totals(samples, now)
    age = -1.0 if t.last_handled_age is None else t.last_handled_age
    found = [
        integer32((*scalars, 1, 0), 1),
        counter64((*scalars, 2, 0), t.handled),
        counter64((*scalars, 3, 0), t.retried),
        counter64((*scalars, 4, 0), t.dead_lettered),
        counter64((*scalars, 5, 0), t.errors),
        gauge32((*scalars, 6, 0), t.workers_alive),
        gauge32((*scalars, 7, 0), t.workers_expected),
        gauge32((*scalars, 8, 0), t.in_flight),
        gauge32((*scalars, 9, 0), t.backlog_ready),
        gauge32((*scalars, 10, 0), t.backlog_delayed),
        gauge32((*scalars, 11, 0), t.dead_letters),
        integer32((*scalars, 12, 0), age),
        counter64((*scalars, 13, 0), t.worker_restarts),
        gauge32((*scalars, 14, 0), t.dispatch_hung),
    ]
    found.extend(_transport_rows((*base, 1, 2, 1), samples))
    found.extend(_worker_rows((*base, 1, 3, 1), samples))
    found.extend(_dispatch_rows((*base, 1, 4, 1), samples))
    return sorted(found)


def _transport_rows(entry: Oid, samples: Samples) -> Iterator[Varbind]:
    for row in per_transport(samples):
        index = name_index(row.transport)
        if index is None:
            continue
        yield counter64((*entry, 2, *index), row.handled)
        yield counter64((*entry, 3, *index), row.retried)
        yield counter64((*entry, 4, *index), row.dead_lettered)


def _worker_rows(entry: Oid, samples: Samples) -> Iterator[Varbind]:
    for sample in samples.select("statusq_worker_rss_bytes"):
        slot = sample.labels.get("slot", "")
        if slot.isdigit() and 1 <= int(slot) <= 65535:
            yield gauge32((*entry, 2, int(slot)), sample.value / 1024)


def _dispatch_rows(entry: Oid, samples: Samples) -> Iterator[Varbind]:
    names = {
        name
        for metric in ("statusq_dispatch_last_run_age_seconds", "statusq_dispatch_running", "statusq_dispatch_hung")
        for name in samples.label_values(metric, "queue")
    }
    for name in sorted(names):
        index = name_index(name)
        if index is None:
            continue
        age = samples.get("statusq_dispatch_last_run_age_seconds", queue=name)
        if age is None or not math.isfinite(age) or age < 0:
            age = -1.0  # never ran
        yield integer32((*entry, 2, *index), age)
        yield integer32((*entry, 3, *index), samples.sum("statusq_dispatch_running", queue=name))
        yield integer32((*entry, 4, *index), samples.sum("statusq_dispatch_hung", queue=name))


class PassPersist:
    """snmpd's ``pass_persist`` protocol over one long-lived process.

    snmpd writes ``PING`` (we answer ``PONG``), ``get``/``getnext`` followed by an OID line, or
    ``set`` followed by an OID and a value line; we answer an OID/type/value triple, ``NONE``,
    or ``not-writable``. Every answer is flushed: snmpd waits for it.
    """

    def __init__(
        self,
        read: Callable[[], Samples],
        *,
        base: Oid = BASE_OID,
        cache_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.read, self.base, self.cache_seconds = read, base, cache_seconds
        self.clock, self.wall = clock, wall
        self._values: list[Varbind] = []
        self._oids: list[Oid] = []
        self._read_at: float | None = None

    def values(self) -> list[Varbind]:
        now = self.clock()
        if self._read_at is None or now - self._read_at >= self.cache_seconds:
            try:
                samples: Samples | None = self.read()
            except ScrapeError as exc:
                log.warning("statusqUp = down: %s", exc)
                samples = None
            self._values = mib_values(samples, self.wall(), self.base)
            self._oids = [v.oid for v in self._values]
            self._read_at = now
        return self._values

    def get(self, oid: Oid) -> Varbind | None:
        values = self.values()
        at = bisect.bisect_left(self._oids, oid)
        return values[at] if at < len(values) and values[at].oid == oid else None

    def getnext(self, oid: Oid) -> Varbind | None:
        values = self.values()
        at = bisect.bisect_right(self._oids, oid)
        return values[at] if at < len(values) else None

    def answer(self, command: str, lines: Callable[[], str]) -> str | None:
        """The reply to one command; ``lines()`` reads the command's argument lines."""
        command = command.strip().lower()
        if command == "ping":
            return "PONG\n"
        if command in ("get", "getnext"):
            try:
                oid = parse_oid(lines())
            except ValueError:
                return "NONE\n"
            found = self.get(oid) if command == "get" else self.getnext(oid)
            return found.render() if found else "NONE\n"
        if command == "set":
            lines(), lines()  # the OID, then "type value"
            return "not-writable\n"
        log.warning("ignoring unknown pass_persist command %r", command)
        return None

    def serve(self, stdin: TextIO, stdout: TextIO) -> None:
        """Answer until snmpd closes stdin (it does when it stops or restarts us)."""
        while line := stdin.readline():
            if not line.strip():
                continue
            reply = self.answer(line, stdin.readline)
            if reply is not None:
                stdout.write(reply)
                stdout.flush()
