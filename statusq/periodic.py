"""Periodic queues as plugins declare them: :class:`QueueSpec`, validated once, at registration.

A plugin calls ``api.register_queue(...)``; a mistake there (a duplicate name, a batch queue
without members, ``min_runs > max_runs``, a frequency of "soon") stops start-up with the plugin
named, rather than surfacing as a queue that silently never runs.  This module depends only on
the core layer, so the handler registry can hold the declarations (``registry.queues``) without
importing the dispatcher machinery.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from statusq import defaults
from statusq.errors import PluginError
from statusq.units import parse_duration

if TYPE_CHECKING:
    from statusq.registry import HandlerRegistry

Kind = Literal["serial", "batch"]
KINDS: tuple[Kind, ...] = ("serial", "batch")
_NAME = re.compile(defaults.NAME_PATTERN)
_SITE = re.compile(defaults.SITE_PATTERN)
#: Longest member key: it is a primary-key column and a header value.
KEY_MAX = 255


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One piece of work a queue's source hands the dispatcher.

    ``key`` names it (a site, a task id) in accounting and headers; ``site`` is the site the item
    runs for (None: the default site); ``payload`` is what the handler gets (None: the dispatcher
    builds ``{"queue", "key", "run", ...}``).
    """

    key: str
    site: str | None = None
    payload: Any = None


#: Serial: ``source(limit)`` returns up to ``limit`` items to run now (e.g. the next pending tasks).
SerialSource = Callable[[int], Iterable["WorkItem | str"]]
#: Batch: ``members()`` returns every item that should be processed once per period (e.g. sites).
MemberSource = Callable[[], Iterable["WorkItem | str"]]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue's declaration; operators may override enabled/frequency/items/timeout at run time."""

    name: str
    kind: Kind
    transport: str
    plugin: str
    frequency: float
    #: Serial: items per run.  Batch: 0, the formula decides (an operator may fix it).
    items: int
    timeout: float
    threshold: int
    min_runs: int
    max_runs: int
    enabled: bool = True
    source: SerialSource | None = None
    members: MemberSource | None = None
    priority: int | None = None
    description: str = ""


def as_work_item(value: WorkItem | str) -> WorkItem:
    """Sources may yield bare keys; anything else must be a WorkItem with a usable key and site."""
    item = WorkItem(value) if isinstance(value, str) else value
    if not isinstance(item, WorkItem):
        raise TypeError(f"a queue source must yield str or WorkItem, not {type(value).__name__}")
    if not item.key or len(item.key) > KEY_MAX:
        raise ValueError(f"item key {item.key!r} must be 1 to {KEY_MAX} characters")
    if item.site is not None and not _SITE.match(item.site):
        raise ValueError(f"item {item.key!r}: invalid site {item.site!r}")
    return item


def _fail(plugin: str, name: object, reason: str) -> PluginError:
    return PluginError(f"queue {name!r}: {reason}", key=f"plugin {plugin}")


def _duration(plugin: str, name: str, what: str, value: float | str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _fail(plugin, name, f"{what}: {exc}") from None
    if seconds <= 0:
        raise _fail(plugin, name, f"{what} must be longer than 0")
    return seconds


def _count(plugin: str, name: str, what: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(plugin, name, f"{what} must be an integer >= {minimum}, not {value!r}")
    return value


def declare(
    name: str,
    kind: str = "serial",
    *,
    transport: str,
    plugin: str,
    frequency: float | str | None = None,
    items: int | None = None,
    timeout: float | str = defaults.QUEUE_TIMEOUT,
    threshold: int = defaults.BATCH_THRESHOLD,
    min_runs: int = defaults.BATCH_MIN_RUNS,
    max_runs: int = defaults.BATCH_MAX_RUNS,
    enabled: bool = True,
    source: SerialSource | None = None,
    members: MemberSource | None = None,
    priority: int | None = None,
    description: str = "",
) -> QueueSpec:
    """Check one declaration and fill in Aegir's defaults (serial: every 5 min, 5 items)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(plugin, name, "invalid name (lowercase letters, digits, '_.-')")
    if kind not in KINDS:
        raise _fail(plugin, name, f"kind must be 'serial' or 'batch', not {kind!r}")
    if not isinstance(transport, str) or not _NAME.match(transport):
        raise _fail(plugin, name, f"invalid transport {transport!r}")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9):
        raise _fail(plugin, name, f"priority must be 0 to 9, not {priority!r}")
    if kind == "batch":
        if not callable(members):
            raise _fail(plugin, name, "a batch queue needs members=callable returning every item (e.g. the sites)")
        if source is not None:
            raise _fail(plugin, name, "source= is for serial queues; a batch queue takes members=")
        default_frequency: float | str = defaults.BATCH_FREQUENCY
        per_run = _count(plugin, name, "items", items, 1) if items is not None else 0
    else:
        if members is not None:
            raise _fail(plugin, name, "members= is for batch queues; a serial queue takes source=")
        if source is not None and not callable(source):
            raise _fail(plugin, name, "source must be callable(limit) -> items")
        default_frequency = defaults.SERIAL_FREQUENCY
        per_run = _count(plugin, name, "items", defaults.SERIAL_ITEMS if items is None else items, 1)
    threshold = _count(plugin, name, "threshold", threshold, 1)
    min_runs = _count(plugin, name, "min_runs", min_runs, 1)
    max_runs = _count(plugin, name, "max_runs", max_runs, 1)
    if min_runs > max_runs:
        raise _fail(plugin, name, f"min_runs ({min_runs}) is more than max_runs ({max_runs})")
    return QueueSpec(
        name=name,
        kind=kind,  # checked against KINDS above
        transport=transport,
        plugin=plugin,
        frequency=_duration(plugin, name, "frequency", default_frequency if frequency is None else frequency),
        items=per_run,
        timeout=_duration(plugin, name, "timeout", timeout),
        threshold=threshold,
        min_runs=min_runs,
        max_runs=max_runs,
        enabled=bool(enabled),
        source=source,
        members=members,
        priority=priority,
        description=description,
    )


class QueueRegistry:
    """Every declared queue of one process, by name; a name declared twice is an error."""

    def __init__(self) -> None:
        self._specs: dict[str, QueueSpec] = {}

    def register(self, spec: QueueSpec) -> None:
        previous = self._specs.get(spec.name)
        if previous is not None:
            raise PluginError(
                f"queue {spec.name!r} registered twice: by plugin {previous.plugin!r} and by plugin {spec.plugin!r}"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> QueueSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __iter__(self) -> Iterator[QueueSpec]:
        return iter([self._specs[name] for name in sorted(self._specs)])

    def __len__(self) -> int:
        return len(self._specs)

    def check_handlers(self, handlers: HandlerRegistry) -> None:
        """Every queue must feed a transport some plugin handles; only knowable once all are loaded."""
        for spec in self:
            if handlers.get(spec.transport) is None:
                raise PluginError(
                    f"queue {spec.name!r} sends to transport {spec.transport!r}, which no plugin handles",
                    key=f"plugin {spec.plugin}",
                )
