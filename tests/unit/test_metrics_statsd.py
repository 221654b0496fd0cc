"""statusq.metrics.statsd: line formats, and sending that never blocks or raises."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from statusq.metrics.statsd import Statsd, clean, counter, gauge, timing


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_lines_have_the_statsd_format() -> None:
    assert counter("statusq.items.handled") == "statusq.items.handled:1|c"
    assert counter("statusq.items.handled", 3) == "statusq.items.handled:3|c"
    assert timing("statusq.handling.distrib", 0.0123456) == "statusq.handling.distrib:12.346|ms"
    assert gauge("statusq.workers.alive", 4) == "statusq.workers.alive:4|g"


def test_name_parts_cannot_break_the_format() -> None:
    assert clean("time limit") == "time_limit"
    assert clean("a.b:c|d@e") == "a_b_c_d_e"
    assert clean("") == "_"
    assert Statsd("127.0.0.1:1", "my.app").name("items", "x.y") == "my.app.items.x_y"
    assert Statsd("127.0.0.1:1", "").name("items") == "items"


def test_one_event_is_one_datagram(receiver: socket.socket) -> None:
    client = Statsd(f"127.0.0.1:{receiver.getsockname()[1]}", "statusq")
    client.send(counter(client.name("items", "handled")), timing(client.name("handling", "demo"), 0.5))
    data = receiver.recv(65536).decode()
    assert data == "statusq.items.handled:1|c\nstatusq.handling.demo:500.000|ms"
    client.close()


def test_a_long_event_is_split_into_one_datagram_per_line(receiver: socket.socket) -> None:
    client = Statsd(f"127.0.0.1:{receiver.getsockname()[1]}", "p")
    lines = [counter(f"p.{'x' * 100}.{n}") for n in range(20)]
    client.send(*lines)
    assert [receiver.recv(65536).decode() for _ in lines] == lines
    client.close()


def test_nobody_listening_loses_events_without_raising() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    client = Statsd(f"127.0.0.1:{port}", "statusq")
    for _ in range(5):
        client.send(counter("statusq.items.handled"))  # the kernel answers ICMP: ECONNREFUSED
    assert client.dropped >= 1
    client.close()


def test_a_name_that_does_not_resolve_drops_events_and_is_not_retried_at_once() -> None:
    calls = []

    def resolve(host: str, port: int) -> tuple[int, tuple[str, int]]:
        calls.append(host)
        raise socket.gaierror("Name or service not known")

    client = Statsd("statsd.invalid:8125", "statusq", resolve=resolve)
    client.send(counter("a"))
    client.send(counter("b"))
    assert client.dropped == 2
    assert calls == ["statsd.invalid"]
