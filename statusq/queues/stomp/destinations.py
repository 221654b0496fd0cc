"""Which broker destination an item goes to, and what a destination says about its items.

Default: one destination per handler group (``/queue/statusq/main``), however many sites, because
a subscription per site does not scale to 10,000 sites.  Breakout entries
(``group/transport`` or ``group/transport/site``) get destinations of their own, so a busy
transport or site can be given its own subscription, prefetch window and workers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Route:
    """What a destination implies: always a group; a transport and site for breakouts."""

    group: str
    transport: str | None = None
    site: str | None = None


class Destinations:
    def __init__(self, basename: str, breakout: list[str]) -> None:
        self.basename = basename
        self._routes = {self.basename + entry: Route(*entry.split("/")) for entry in breakout}
        self._by_key = {(r.group, r.transport, r.site): d for d, r in self._routes.items()}

    def for_item(self, group: str, transport: str, site: str) -> str:
        """The most specific destination configured for this item."""
        return (
            self._by_key.get((group, transport, site))
            or self._by_key.get((group, transport, None))
            or self.basename + group
        )

    def for_groups(self, groups: set[str]) -> list[str]:
        """Everything a worker serving these groups subscribes to: group queues and breakouts."""
        group_queues = [self.basename + g for g in sorted(groups)]
        breakouts = sorted(d for d, r in self._routes.items() if r.group in groups)
        return group_queues + breakouts

    def route(self, destination: str) -> Route | None:
        """What a destination says about its items (None: not one of ours)."""
        route = self._routes.get(destination)
        if route is not None:
            return route
        rest = destination.removeprefix(self.basename)
        if rest != destination and rest and "/" not in rest:
            return Route(rest)
        return None
