"""gmetric's wire format and the figures sent, checked against a UDP socket of our own."""

from __future__ import annotations

import socket
import struct

from statusq.metrics import ganglia
from statusq.metrics.scrape import Samples
from tests.monitoring_helpers import metrics_text

NOW = 1_750_000_000.0


class Xdr:
    """Just enough of an XDR reader to take our packets apart again."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def uint(self) -> int:
        (value,) = struct.unpack_from(">I", self.data, self.at)
        self.at += 4
        return int(value)

    def string(self) -> str:
        size = self.uint()
        text = self.data[self.at : self.at + size].decode()
        self.at += size + (-size % 4)
        return text

    def done(self) -> bool:
        return self.at == len(self.data)


def test_metadata_packet_layout() -> None:
    metric = ganglia.GMetric("statusq_handled", 5, "double", "items", "positive", "items handled")
    x = Xdr(ganglia.encode_metadata(metric, "web1", tmax=60, dmax=300))
    assert x.uint() == 128  # gmetadata_full
    assert (x.string(), x.string(), x.uint()) == ("web1", "statusq_handled", 0)  # host, name, spoof
    assert (x.string(), x.string(), x.string()) == ("double", "statusq_handled", "items")
    assert (x.uint(), x.uint(), x.uint()) == (1, 60, 300)  # slope positive, tmax, dmax
    extra = {x.string(): x.string() for _ in range(x.uint())}
    assert extra == {"GROUP": "statusq", "DESC": "items handled", "TITLE": "statusq_handled"}
    assert x.done()


def test_value_packet_is_a_string_as_gmetric_sends() -> None:
    metric = ganglia.GMetric("statusq_workers", 3.0, "uint32", "workers", "both", "")
    x = Xdr(ganglia.encode_value(metric, "web1"))
    assert x.uint() == 133  # gmetric_string
    assert (x.string(), x.string(), x.uint()) == ("web1", "statusq_workers", 0)
    assert (x.string(), x.string()) == ("%s", "3")
    assert x.done()


def test_figures_from_a_scrape() -> None:
    sent = {m.name: m for m in ganglia.figures(Samples.parse(metrics_text(NOW)), NOW)}
    assert sent["statusq_up"].text() == "1"
    assert sent["statusq_handled"].text() == "164"
    assert sent["statusq_handled"].slope == "positive"
    assert sent["statusq_backlog_ready"].text() == "4"
    assert sent["statusq_workers_expected"].text() == "3"
    assert sent["statusq_handled_xmpp"].text() == "41"
    assert sent["statusq_dead_lettered_xmpp"].text() == "2"
    assert sent["statusq_last_handled_age"].text() == "3"


def test_down_sends_statusq_up_zero_only() -> None:
    assert [(m.name, m.text()) for m in ganglia.figures(None, NOW)] == [("statusq_up", "0")]


def test_transport_names_are_made_safe_for_rrd_files() -> None:
    assert ganglia.safe_name("a/b c.d-e_f") == "a_b_c.d-e_f"


def test_send_puts_metadata_before_each_value() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        metrics = ganglia.figures(None, NOW)
        assert ganglia.send(metrics, sock.getsockname(), host="h") == 1
        first, second = sock.recv(2048), sock.recv(2048)
    assert Xdr(first).uint() == 128
    assert Xdr(second).uint() == 133
