"""Items handled per second over the last minutes: a rate history and its inline SVG.

The page keeps no count of its own: it samples ``statusq_items_total{outcome="handled"}`` from
the daemon's ``/metrics`` (the one metrics model) and turns successive totals into rates.  The
chart is drawn here, on the server, as a small SVG: no JavaScript and no chart library.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from statusq.web.html import Markup, join, render

WIDTH, HEIGHT = 640, 180
#: Room for the axis labels around the plot area.
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 24


@dataclass(frozen=True, slots=True)
class Point:
    at: float  # wall clock (time.time()) at the end of the interval
    rate: float  # items handled per second during the interval


class RateHistory:
    """Totals in, rates out; bounded to ``window`` seconds.  Fed by one sampler thread, read by
    request threads."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._points: deque[Point] = deque()
        self._last: tuple[float, float] | None = None  # (at, total)
        self._lock = threading.Lock()
        #: Why the latest sample failed (None: it worked); shown instead of a stale chart.
        self.problem: str | None = "no sample yet"

    def add_total(self, at: float, total: float) -> None:
        with self._lock:
            self.problem = None
            last, self._last = self._last, (at, total)
            if last is None or at <= last[0]:
                return
            # A total that went down is a restarted counter: that interval's rate is unknown.
            if total >= last[1]:
                self._points.append(Point(at, (total - last[1]) / (at - last[0])))
            while self._points and self._points[0].at < at - self.window:
                self._points.popleft()

    def failed(self, why: str) -> None:
        with self._lock:
            self.problem = why
            self._last = None  # the interval across an outage is not one rate

    def points(self) -> list[Point]:
        with self._lock:
            return list(self._points)


def nice_ceiling(value: float) -> float:
    """The axis maximum: 1, 2 or 5 times a power of ten, at least ``value`` (and at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def chart_svg(points: Sequence[Point], now: float, window: float, *, title: str = "items handled per second") -> Markup:
    """The SVG for ``points`` over ``[now - window, now]``; readable with no data too."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((p.rate for p in points), default=0.0))

    def x(at: float) -> float:
        return LEFT + plot_w * min(1.0, max(0.0, (at - (now - window)) / window))

    def y(rate: float) -> float:
        return TOP + plot_h * (1 - min(1.0, max(0.0, rate / top)))

    grid = join(
        render(
            '<line class="grid" x1="{x1}" y1="{y}" x2="{x2}" y2="{y}"/>'
            '<text class="axis" x="{lx}" y="{ty}" text-anchor="end">{label}</text>',
            x1=LEFT,
            x2=WIDTH - RIGHT,
            y=f"{y(top * f):.1f}",
            lx=LEFT - 6,
            ty=f"{y(top * f) + 4:.1f}",
            label=_number(top * f),
        )
        for f in (0, 0.5, 1)
    )
    minutes = window / 60
    ticks = render(
        '<text class="axis" x="{x0}" y="{ty}">-{minutes}</text><text class="axis" x="{x1}" y="{ty}" '
        'text-anchor="end">now</text>',
        x0=LEFT, x1=WIDTH - RIGHT, ty=HEIGHT - 6, minutes=f"{minutes:g} min" if minutes >= 1 else f"{window:g} s",
    )  # fmt: skip
    if points:
        coords = " ".join(f"{x(p.at):.1f},{y(p.rate):.1f}" for p in points)
        line = render('<polyline class="rate" fill="none" points="{coords}"/>', coords=coords)
        last = points[-1]
        line += render(
            '<circle class="rate" cx="{cx}" cy="{cy}" r="3"/>', cx=f"{x(last.at):.1f}", cy=f"{y(last.rate):.1f}"
        )
    else:
        line = render(
            '<text class="axis" x="{cx}" y="{cy}" text-anchor="middle">no data yet</text>',
            cx=LEFT + plot_w / 2,
            cy=TOP + plot_h / 2,
        )
    return render(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'role="img" aria-label="{title}"><title>{title}</title>{grid}{ticks}{line}</svg>',
        w=WIDTH, h=HEIGHT, title=title, grid=grid, ticks=ticks, line=line,
    )  # fmt: skip


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
