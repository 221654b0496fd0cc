"""Hosts as Linux network namespaces on one bridge, for fault tests that cut a host off the
network (issue 18).

A bridge in the root namespace and one namespace per host, each attached by a veth pair, on a
private /24 of the run's own; ``lo`` is up in each.  Cutting a host sets its veth's root-side end
down: its TCP connections neither close nor answer, which is what a pulled cable or a dead switch
port looks like to the processes on both sides, unlike a killed process (its kernel resets them).

Every name (namespaces, links, the bridge) carries a tag of the run's own and the /24 is one no
other interface uses, so runs in parallel never collide; :meth:`Netns.teardown` removes all of it,
and every process in the namespaces, whatever state a failing test left it in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers import IN_CI, require_tool

#: 10.230.0.0/16 to 10.239.0.0/16: the /24s a run picks from (one unused by any interface).
FIRST_OCTET, SECOND_OCTETS = 10, range(230, 240)
BRIDGE_HOST = 254  # the bridge's own address in the /24; hosts get 1, 2, ... in the order named


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``: raises with ip's own message when ``check`` and it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.23x.y.0 that no interface's address or route on this machine falls in."""
    used = ip("-4", "route", "show", "table", "all").stdout + ip("-4", "addr").stdout
    for _ in range(200):
        net = ipaddress.IPv4Network(f"{FIRST_OCTET}.{random.choice(SECOND_OCTETS)}.{random.randrange(256)}.0/24")
        if f"{net.network_address}".rsplit(".", 1)[0] + "." not in used:
            return net
    raise RuntimeError("no free 10.23x.y.0/24 left")


class Netns:
    """Hosts (network namespaces) on one bridge: run commands in them, cut and restore their links."""

    def __init__(self, hosts: list[str]) -> None:
        self.tag = uuid.uuid4().hex[:5]  # "sq" + 5 + "h" + 2 digits: far under IFNAMSIZ (15)
        self.subnet = free_subnet()
        self.hosts = list(hosts)
        self._created: list[tuple[str, str]] = []  # ("netns"|"link", name), in creation order
        self._started: list[subprocess.Popen[Any]] = []

    # -- names and addresses ---------------------------------------------------------------------

    @property
    def bridge(self) -> str:
        return f"sq{self.tag}br"

    def namespace(self, host: str) -> str:
        return f"sq{self.tag}-{host}"

    def veth(self, host: str) -> str:
        """The root-side end of ``host``'s veth pair (the one :meth:`cut` sets down)."""
        return f"sq{self.tag}h{self.hosts.index(host)}"

    def address(self, host: str) -> str:
        return str(self.subnet.network_address + self.hosts.index(host) + 1)

    # -- building and tearing down ---------------------------------------------------------------

    def setup(self) -> None:
        """The bridge, then each host: its namespace, veth pair, address, ``lo`` and link up."""
        prefix = self.subnet.prefixlen
        ip("link", "add", self.bridge, "type", "bridge")
        self._created.append(("link", self.bridge))
        ip("addr", "add", f"{self.subnet.network_address + BRIDGE_HOST}/{prefix}", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, host in enumerate(self.hosts):
            ns, outer, inner = self.namespace(host), self.veth(host), f"sq{self.tag}p{index}"
            ip("netns", "add", ns)
            self._created.append(("netns", ns))
            ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            self._created.append(("link", outer))  # deleting one end deletes the pair
            ip("link", "set", inner, "netns", ns)
            ip("link", "set", outer, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{self.address(host)}/{prefix}", "dev", inner)
            ip("-n", ns, "link", "set", inner, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def teardown(self) -> None:
        """Remove everything :meth:`setup` made and kill every process in the namespaces (the
        ones :meth:`popen` started and whatever they started, daemons that setsid included);
        each step goes on whatever the previous one met."""
        for process in self._started:
            with contextlib.suppress(OSError):
                process.kill()
        for kind, name in self._created:
            if kind == "netns":
                self._kill_all_in(name)
        for process in self._started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for kind, name in reversed(self._created):
            ip(*(["netns", "del", name] if kind == "netns" else ["link", "del", name]), check=False)
        self._created.clear()

    def _kill_all_in(self, ns: str) -> None:
        """SIGKILL every process in namespace ``ns``, until none is left (a dying parent's child
        may be forked meanwhile); a namespace with processes outlives ``ip netns del``."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    # -- using it --------------------------------------------------------------------------------

    def wrap(self, host: str) -> list[str]:
        """The argv prefix that runs a command inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def run(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in ``host``'s namespace to its end (30 s at most unless ``timeout``)."""
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("capture_output", True)
        return subprocess.run([*self.wrap(host), *argv], text=True, **kwargs)

    def popen(self, host: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``host``'s namespace (``ip netns exec`` execs it: the pid is the
        command's own); killed by :meth:`teardown` if still running."""
        process = subprocess.Popen([*self.wrap(host), *argv], **kwargs)
        self._started.append(process)
        return process

    def pids(self, host: str) -> list[int]:
        return [int(p) for p in ip("netns", "pids", self.namespace(host)).stdout.split()]

    def cut(self, host: str) -> None:
        """Take ``host`` off the network: nothing in or out, no connection closed."""
        ip("link", "set", self.veth(host), "down")

    def restore(self, host: str) -> None:
        ip("link", "set", self.veth(host), "up")


def network(hosts: list[str]) -> Iterator[Netns]:
    """A :class:`Netns` of ``hosts``, set up; torn down afterwards whatever happened.  Where
    namespaces cannot be made (not root, no CAP_SYS_ADMIN, a container that refuses them): skip,
    or under CI=true fail, with ip's reason."""
    require_tool("ip")
    net = Netns(hosts)
    try:
        try:
            net.setup()
        except RuntimeError as exc:
            message = f"cannot build network namespaces here: {exc}"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)
        yield net
    finally:
        net.teardown()
