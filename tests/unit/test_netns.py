"""tests/netns.py without touching the machine: names fit the kernel's limit, a refused namespace
skips (or fails under CI=true), and what was built before a refusal is removed."""

from __future__ import annotations

import subprocess

import pytest

from tests import netns


class FakeIp:
    """``ip`` that records its calls and refuses ``netns add`` as an unprivileged container does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[:2] == ("netns", "add"):
            raise RuntimeError("ip netns add: mount --make-shared /run/netns failed: Operation not permitted")
        return subprocess.CompletedProcess(["ip", *args], 0, "", "")


@pytest.fixture
def fake_ip(monkeypatch: pytest.MonkeyPatch) -> FakeIp:
    fake = FakeIp()
    monkeypatch.setattr(netns, "ip", fake)
    monkeypatch.setattr(netns, "require_tool", lambda name: name)
    return fake


def test_interface_names_fit_ifnamsiz_and_addresses_are_in_the_runs_own_slash_24(fake_ip: FakeIp) -> None:
    net = netns.Netns(["brokers", "h1", "h2", "h3"])
    names = [net.bridge, *(net.veth(h) for h in net.hosts)]
    assert all(len(name) <= 15 for name in names), names
    assert len(set(names)) == len(names)
    assert net.subnet.prefixlen == 24 and str(net.subnet).startswith("10.23")
    assert [net.address(h).rsplit(".", 1)[1] for h in net.hosts] == ["1", "2", "3", "4"]


def test_a_refused_namespace_skips_and_removes_the_bridge_already_made(
    fake_ip: FakeIp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netns, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="Operation not permitted"):
        next(netns.network(["h1"]))
    assert fake_ip.calls[-1][:2] == ("link", "del"), "the bridge made before the refusal is removed"


def test_a_refused_namespace_fails_under_ci(fake_ip: FakeIp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netns, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="cannot build network namespaces"):
        next(netns.network(["h1"]))
