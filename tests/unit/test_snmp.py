"""STATUSQ-MIB's mapping of /metrics to OIDs, and the pass_persist protocol, without snmpd."""

from __future__ import annotations

import io
import math

import pytest

from statusq.metrics import snmp
from statusq.metrics.scrape import Samples, ScrapeError
from tests.monitoring_helpers import metrics_text

NOW = 1_750_000_000.0
BASE = ".1.3.6.1.3.9464"


def samples(**kwargs: float) -> Samples:
    return Samples.parse(metrics_text(NOW, **kwargs))  # type: ignore[arg-type]


def by_oid(values: list[snmp.Varbind]) -> dict[str, tuple[str, int]]:
    return {snmp.format_oid(v.oid): (v.type, v.value) for v in values}


def test_totals_sum_over_sites_and_transports() -> None:
    t = snmp.totals(samples(), NOW)
    assert (t.handled, t.retried, t.dead_lettered, t.errors) == (164, 7, 2, 9)
    assert (t.workers_alive, t.workers_expected, t.workers_down) == (2, 3, 1)
    assert (t.backlog_ready, t.backlog_delayed, t.backlog) == (4, 2, 6)
    assert (t.dead_letters, t.worker_restarts, t.dispatch_hung, t.in_flight) == (1, 3, 0, 1)
    assert t.last_handled_age == pytest.approx(3.0)


def test_a_never_set_last_handled_timestamp_means_never_not_the_epoch() -> None:
    assert snmp.totals(samples(last_handled=-1), NOW).last_handled_age is None
    assert snmp.totals(Samples([]), NOW).last_handled_age is None


def test_scalars_carry_the_mib_types_and_values() -> None:
    values = by_oid(snmp.mib_values(samples(), NOW))
    assert values[f"{BASE}.1.1.1.0"] == ("integer", 1)
    assert values[f"{BASE}.1.1.2.0"] == ("counter64", 164)
    assert values[f"{BASE}.1.1.6.0"] == ("gauge", 2)
    assert values[f"{BASE}.1.1.9.0"] == ("gauge", 4)
    assert values[f"{BASE}.1.1.12.0"] == ("integer", 3)
    assert values[f"{BASE}.1.1.14.0"] == ("gauge", 0)


def test_tables_are_indexed_by_name_and_slot() -> None:
    values = by_oid(snmp.mib_values(samples(), NOW))
    xmpp = "4.120.109.112.112"  # length, then the bytes of "xmpp"
    assert values[f"{BASE}.1.2.1.2.{xmpp}"] == ("counter64", 41)
    assert values[f"{BASE}.1.2.1.4.{xmpp}"] == ("counter64", 2)
    assert values[f"{BASE}.1.2.1.2.7.100.105.115.116.114.105.98"] == ("counter64", 123)  # distrib, two sites
    assert values[f"{BASE}.1.3.1.2.2"] == ("gauge", 61865984 // 1024)
    cron = "4.99.114.111.110"
    assert values[f"{BASE}.1.4.1.2.{cron}"] == ("integer", 42)
    assert values[f"{BASE}.1.4.1.3.{cron}"] == ("integer", 1)


def test_values_come_in_oid_order_for_a_walk() -> None:
    oids = [v.oid for v in snmp.mib_values(samples(), NOW)]
    assert oids == sorted(oids)
    assert len(set(oids)) == len(oids)


def test_down_serves_statusq_up_zero_only() -> None:
    assert by_oid(snmp.mib_values(None, NOW)) == {f"{BASE}.1.1.1.0": ("integer", 0)}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3.9, 3), (-5.0, 0), (math.nan, 0), (math.inf, 2**32 - 1), (2.0**40, 2**32 - 1)],
)
def test_gauge32_rounds_down_and_clamps(value: float, expected: int) -> None:
    assert snmp.gauge32((1,), value).value == expected


def test_a_name_too_long_for_the_index_is_left_out() -> None:
    assert snmp.name_index("x" * 65) is None
    assert snmp.name_index("") is None
    assert snmp.name_index("ab") == (2, 97, 98)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def agent(reads: list[Samples | Exception], clock: FakeClock) -> snmp.PassPersist:
    def read() -> Samples:
        item = reads.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return snmp.PassPersist(read, cache_seconds=1.0, clock=clock, wall=lambda: NOW)


def test_protocol_ping_get_getnext_set() -> None:
    out = io.StringIO()
    stdin = io.StringIO(
        "PING\n"
        f"get\n{BASE}.1.1.2.0\n"
        f"getnext\n{BASE}\n"
        f"getnext\n{BASE}.1.1.14.0\n"
        f"get\n{BASE}.1.1.99.0\n"
        f"set\n{BASE}.1.1.2.0\ninteger 5\n"
    )
    agent([samples()], FakeClock()).serve(stdin, out)
    assert out.getvalue().splitlines() == [
        "PONG",
        f"{BASE}.1.1.2.0",
        "counter64",
        "164",
        f"{BASE}.1.1.1.0",
        "integer",
        "1",
        f"{BASE}.1.2.1.2.4.120.109.112.112",  # past the scalars: the transport table, shortest name first
        "counter64",
        "41",
        "NONE",
        "not-writable",
    ]


def test_getnext_past_the_last_object_is_none() -> None:
    last = snmp.mib_values(samples(), NOW)[-1]
    assert agent([samples()], FakeClock()).getnext(last.oid) is None


def test_one_scrape_answers_for_the_cache_time_then_a_new_one_is_read() -> None:
    clock = FakeClock()
    pp = agent([samples(ready=4), samples(ready=9)], clock)
    ready = snmp.parse_oid(f"{BASE}.1.1.9.0")
    assert pp.get(ready) == snmp.Varbind(ready, "gauge", 4)
    clock.now += 0.5
    assert pp.get(ready) == snmp.Varbind(ready, "gauge", 4)
    clock.now += 0.6
    assert pp.get(ready) == snmp.Varbind(ready, "gauge", 9)


def test_an_unreachable_daemon_is_statusq_up_zero() -> None:
    pp = agent([ScrapeError("refused")], FakeClock())
    up = snmp.parse_oid(f"{BASE}.1.1.1.0")
    assert pp.get(up) == snmp.Varbind(up, "integer", 0)
    assert pp.getnext(up) is None
