"""The network-of-brokers config we ship (conf/activemq-network.xml) is the one the suite runs,
and differs from conf/activemq.xml only by the network: a change to one that the other misses
fails here (issue 18)."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CONF = ROOT / "conf"
ACTIVEMQ_SH = ROOT / "scripts" / "servers" / "activemq.sh"
NS = "{http://activemq.apache.org/schema/core}"
SHIPPED_PEER = "tcp://broker-b.example.org:61616"


def broker(text: str) -> ET.Element:
    found = ET.fromstring(text).find(f"{NS}broker")
    assert found is not None, "no <broker> element"
    return found


def canon(element: ET.Element) -> str:
    """The element as C14N, whitespace between tags and comments left out."""
    return ET.canonicalize(ET.tostring(element, encoding="unicode"), strip_text=True)


def network_parts(element: ET.Element) -> tuple[str, str]:
    """The broker's <networkConnectors> and its queue policy entry, canonical."""
    connectors = element.find(f"{NS}networkConnectors")
    policy = element.find(f".//{NS}policyEntry[@queue='>']")
    assert connectors is not None and policy is not None
    return canon(connectors), canon(policy)


def without_network(element: ET.Element) -> ET.Element:
    """The broker as conf/activemq.xml would have it: no connectors, no replay filter, no
    audit setting, no OpenWire listener for peers, the other file's broker name."""
    for connectors in element.findall(f"{NS}networkConnectors"):
        element.remove(connectors)
    policy = element.find(f".//{NS}policyEntry[@queue='>']")
    assert policy is not None
    for child in list(policy):
        policy.remove(child)
    del policy.attrib["enableAudit"]
    listeners = element.find(f"{NS}transportConnectors")
    assert listeners is not None
    for listener in listeners.findall(f"{NS}transportConnector[@name='openwire']"):
        listeners.remove(listener)
    element.set("brokerName", "statusq")
    return element


def test_the_network_config_is_the_single_broker_config_plus_the_network() -> None:
    single = broker((CONF / "activemq.xml").read_text())
    network = without_network(broker((CONF / "activemq-network.xml").read_text()))
    assert canon(network) == canon(single)


def test_the_suite_runs_the_shipped_network_settings() -> None:
    # Given the XML activemq.sh starts a broker of a network with (two peers)
    done = subprocess.run(
        [str(ACTIVEMQ_SH), "xml", "n1", "61721", "61731", "--peer=61732", "--peer=61733"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    started = broker(done.stdout)
    shipped = broker((CONF / "activemq-network.xml").read_text().replace(SHIPPED_PEER, "PEERS"))
    # Then its connectors and queue policy are the shipped ones, our peers in the URIs
    peers = "tcp://127.0.0.1:61732,tcp://127.0.0.1:61733"
    assert network_parts(started) == tuple(part.replace("PEERS", peers) for part in network_parts(shipped))
    # and the replay to the origin is on (the setting the e2e test's stuck backlog needs)
    assert 'replayWhenNoConsumers="true"' in network_parts(started)[1]


def test_a_broker_without_peers_has_no_network() -> None:
    done = subprocess.run(
        [str(ACTIVEMQ_SH), "xml", "main", "61613", "61616"], capture_output=True, text=True, timeout=30, check=True
    )
    started = broker(done.stdout)
    assert started.find(f"{NS}networkConnectors") is None
    policy = started.find(f".//{NS}policyEntry[@queue='>']")
    assert policy is not None and len(policy) == 0 and "enableAudit" not in policy.attrib
