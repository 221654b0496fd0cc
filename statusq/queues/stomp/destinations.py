"""Which broker destination an item goes to, and what a destination says about its items.

Default: ``[queue.stomp] shards`` destinations per handler group (``/queue/statusq/main/shard-0``
… ``shard-3``), an item's chosen by a stable hash of its site, however many sites: a
subscription per site does not scale to 10,000 sites, and one destination per group let a site
that flooded it keep every other site's items behind its backlog.  A worker subscribes to every
shard of its groups and takes from each in turn (``StompConsumer``), so a flood fills one shard
and the other sites' items, in the others, keep their turns.  Sites that share the flooded
site's shard (one in ``shards``) still wait behind it: a breakout entry gives a site a
destination of its own.  ``shards = 1``: one destination per group, the layout before sharding.

Breakout entries (``group/transport`` or ``group/transport/site``) get destinations of their
own, so a busy transport or site can be given its own subscription, prefetch window and workers.

Migration: a worker also subscribes to the group's unsharded destination (``/queue/statusq/main``),
so what producers of an older statusq (or with ``shards = 1``) sent there is still drained.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

#: A shard destination is the group's own with this and the shard's number appended.
SHARD = "/shard-"
#: A hot site's destination is the group's own with this and the site's escaped name appended.
SITE = "/site-"
#: What a site's name keeps in its destination: safe on ActiveMQ and RabbitMQ, and no "%"
#: (RabbitMQ's STOMP adapter URL-decodes destinations).  The rest becomes "_".
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: A site's name is cut to this in its destination (RabbitMQ: queue names of 255 bytes at most).
_SITE_CHARS = 64


def rabbitmq_name(destination: str) -> str:
    """RabbitMQ's name for a destination: it refuses '/' inside a queue name, so
    ``/queue/statusq/main/distrib`` is ``/queue/statusq.main.distrib`` there (a topic's alike);
    anything else as it is.  One rule for the link, the benches and the tests."""
    for prefix in ("/queue/", "/topic/"):
        if destination.startswith(prefix):
            return prefix + destination.removeprefix(prefix).strip("/").replace("/", ".")
    return destination


def site_slug(site: str) -> str:
    """``site`` as a destination may carry it: unsafe characters replaced, cut to 64, and its
    CRC-32 appended, so that two sites that escape alike still get destinations of their own."""
    return f"{_UNSAFE.sub('_', site)[:_SITE_CHARS]}-{zlib.crc32(site.encode('utf-8')):08x}"


def site_group(destination: str, basename: str) -> str | None:
    """The group of a hot site's destination (None: not one)."""
    rest = destination.removeprefix(basename)
    if rest == destination:
        return None
    group, marker, _ = rest.partition(SITE)
    return group if marker and group and "/" not in group else None


def shard_of(site: str, shards: int) -> int:
    """The shard of ``site``'s items: the same in every process and host (CRC-32, not ``hash()``,
    which is salted per process), so producers and workers that agree on ``shards`` agree on it."""
    return zlib.crc32(site.encode("utf-8")) % shards


@dataclass(frozen=True, slots=True)
class Route:
    """What a destination implies: always a group; a transport and site for breakouts."""

    group: str
    transport: str | None = None
    site: str | None = None


class Destinations:
    def __init__(self, basename: str, breakout: list[str], shards: int = 1) -> None:
        self.basename = basename
        self.shards = shards
        self._routes = {self.basename + entry: Route(*entry.split("/")) for entry in breakout}
        self._by_key = {(r.group, r.transport, r.site): d for d, r in self._routes.items()}

    def for_item(self, group: str, transport: str, site: str) -> str:
        """The most specific destination configured for this item."""
        return (
            self._by_key.get((group, transport, site))
            or self._by_key.get((group, transport, None))
            or self.for_group(group, site)
        )

    def for_group(self, group: str, site: str) -> str:
        """The group's destination for ``site``'s items: its shard (or the group's one)."""
        if self.shards <= 1:
            return self.basename + group
        return f"{self.basename}{group}{SHARD}{shard_of(site, self.shards)}"

    def for_site(self, group: str, site: str) -> str:
        """A hot site's own destination in ``group`` (made by the workers that move its items)."""
        return f"{self.basename}{group}{SITE}{site_slug(site)}"

    def home(self, destination: str, site: str) -> str:
        """Where an item taken from ``destination`` goes back to (a retry, a delay, a release):
        from a hot site's destination, its shard, which every worker takes from (the site's
        own may be cooled by then, and on RabbitMQ deleted); from any other, the same one."""
        group = site_group(destination, self.basename)
        return destination if group is None else self.for_group(group, site)

    def for_groups(self, groups: set[str]) -> list[str]:
        """Everything a worker serving these groups subscribes to: each group's unsharded queue
        (what older producers sent), its shards, and the breakouts."""
        group_queues = []
        for group in sorted(groups):
            group_queues.append(self.basename + group)
            if self.shards > 1:
                group_queues.extend(f"{self.basename}{group}{SHARD}{n}" for n in range(self.shards))
        breakouts = sorted(d for d, r in self._routes.items() if r.group in groups)
        return group_queues + breakouts

    def route(self, destination: str) -> Route | None:
        """What a destination says about its items (None: not one of ours)."""
        route = self._routes.get(destination)
        if route is not None:
            return route
        rest = destination.removeprefix(self.basename)
        if rest == destination or not rest:
            return None
        group = site_group(destination, self.basename)
        if group is not None:
            return Route(group)
        group, _, shard = rest.partition(SHARD)
        if "/" not in group and (not shard or shard.isdigit()):
            return Route(group)
        return None
