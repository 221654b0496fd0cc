"""The nagios check's logic: thresholds in the monitoring-plugins range syntax, one status line.

Kept apart from the command so the range semantics (the part every nagios admin already knows
and will hold us to) are tested without a daemon. The figures are ``statusq.metrics.snmp.Totals``,
so ``check_statusq`` and the SNMP agent never disagree about what "backlog" means.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from statusq.metrics.snmp import Totals


class Status(enum.IntEnum):
    """Plugin exit codes (monitoring-plugins guidelines, "Plugin Return Codes")."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


class RangeError(ValueError):
    """A threshold that does not parse: the plugin exits UNKNOWN and says which."""


@dataclass(frozen=True, slots=True)
class Range:
    """``[@]start:end``: alert outside [start, end], or inside it with ``@``.

    ``10`` is ``0:10``; ``10:`` has no upper end; ``~:10`` has no lower end.
    """

    start: float
    end: float
    inside: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> Range:
        spec = text.strip()
        inside = spec.startswith("@")
        body = spec[1:] if inside else spec
        if not body:
            raise RangeError(f"empty threshold range {text!r}")
        low, sep, high = body.rpartition(":") if ":" in body else ("0", ":", body)
        try:
            start = -math.inf if low == "~" else float(low or 0)
            end = math.inf if sep and high == "" else float(high)
        except ValueError:
            raise RangeError(f"threshold range {text!r} is not [@]start:end with numbers") from None
        if start > end:
            raise RangeError(f"threshold range {text!r} starts after it ends")
        return cls(start, end, inside, spec)

    def alerts(self, value: float) -> bool:
        within = self.start <= value <= self.end
        return within if self.inside else not within


@dataclass(frozen=True, slots=True)
class Check:
    key: str
    label: str  # perfdata label, and the words of the status text
    aliases: tuple[str, ...]
    value: Callable[[Totals], float | None]
    uom: str = ""
    #: What perfdata shows, when it differs from what the thresholds judge.
    shown: Callable[[Totals], float | None] | None = None


def _age_when_waiting(totals: Totals) -> float | None:
    return totals.last_handled_age if totals.backlog_ready > 0 else None


CHECKS = (
    Check("backlog", "backlog", ("waiting",), lambda t: t.backlog),
    Check("dead_letters", "dead letters", ("dead",), lambda t: t.dead_letters),
    Check("hung_queues", "hung queues", ("hung",), lambda t: t.dispatch_hung),
    Check("workers_down", "workers down", ("down",), lambda t: t.workers_down),
    # Judged only while items are ready: an idle daemon with nothing to do is not stuck.
    # Graphed always (when known), so the perfdata line has no holes.
    Check("last_handled_age", "last handled", ("age",), _age_when_waiting, "s", lambda t: t.last_handled_age),
)
KEYS = {name: check.key for check in CHECKS for name in (check.key, *check.aliases)}


def parse_thresholds(specs: Iterable[str]) -> dict[str, Range]:
    """``-w backlog=10,dead=1:`` (repeatable) into ranges by check key; a later one wins."""
    found: dict[str, Range] = {}
    for spec in specs:
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, eq, text = part.partition("=")
            if not eq or name.strip() not in KEYS:
                known = ", ".join(c.key for c in CHECKS)
                raise RangeError(f"threshold {part!r} is not NAME=RANGE with NAME one of {known}")
            found[KEYS[name.strip()]] = Range.parse(text)
    return found


@dataclass(frozen=True, slots=True)
class Result:
    status: Status
    line: str


def number(value: float) -> str:
    if not math.isfinite(value):
        return "U"
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def evaluate(totals: Totals, warning: dict[str, Range], critical: dict[str, Range]) -> Result:
    """The status and the one line a check plugin prints: text, then ``|`` and perfdata."""
    status, problems, perf = Status.OK, [], []
    for check in CHECKS:
        value = check.value(totals)
        warn, crit = warning.get(check.key), critical.get(check.key)
        if value is not None:
            if crit and crit.alerts(value):
                status = max(status, Status.CRITICAL)
                problems.append(f"{check.label} {number(value)}{check.uom} (critical {crit.text})")
            elif warn and warn.alerts(value):
                status = max(status, Status.WARNING)
                problems.append(f"{check.label} {number(value)}{check.uom} (warning {warn.text})")
        graphed = check.shown(totals) if check.shown else value
        shown = "U" if graphed is None else f"{number(graphed)}{check.uom}"
        perf.append(f"'{check.key}'={shown};{warn.text if warn else ''};{crit.text if crit else ''};0")
    perf[:0] = [
        f"'handled'={number(totals.handled)}c;;;0",
        f"'retried'={number(totals.retried)}c;;;0",
        f"'dead_lettered'={number(totals.dead_lettered)}c;;;0",
        f"'errors'={number(totals.errors)}c;;;0",
        f"'workers'={number(totals.workers_alive)};;;0;{number(totals.workers_expected)}",
        f"'in_flight'={number(totals.in_flight)};;;0",
    ]
    summary = _summary(totals)
    text = f"{'; '.join(problems)} - {summary}" if problems else summary
    return Result(status, f"STATUSQ {status.name} - {text} | {' '.join(perf)}")


def _summary(t: Totals) -> str:
    age = "never handled" if t.last_handled_age is None else f"last handled {number(t.last_handled_age)}s ago"
    return (
        f"{number(t.handled)} handled, backlog {number(t.backlog)}, {number(t.dead_letters)} dead letters, "
        f"{number(t.workers_alive)}/{number(t.workers_expected)} workers, {number(t.dispatch_hung)} hung queues, "
        f"{age}"
    )


def unknown(reason: str) -> Result:
    """The daemon could not be asked, or the plugin was called wrongly: no perfdata, a reason."""
    return Result(Status.UNKNOWN, f"STATUSQ UNKNOWN - {reason.replace('|', '/')}")
