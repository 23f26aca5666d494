"""The overview's scaling plot as plain data: accuracy against mean TTC, in SVG coordinates.

One series per method family, a line through its methods in order of TTC. The TTC axis
is logarithmic, with ticks at 1, 2 and 5 times a power of ten (only powers of ten over a
wide range) labelled as `1k`, `10k`, `1M`. Each family has its own colour, from eight
that stay apart for most colour vision (Okabe and Ito's, the yellow swapped for brown),
and its own marker shape; every method is named in the legend right of the axes, with
its accuracy and TTC, so no label is ever cut and eight methods stay readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c564b")
SHAPES = ("circle", "square", "triangle", "diamond")

LEFT, TOP, AREA_WIDTH, AREA_HEIGHT = 64, 16, 440, 240
"""Where the axes' area lies in the SVG (the legend goes right of it)."""
LEGEND_WIDTH, LINE = 300, 18
MAX_TICKS = 8


@dataclass(frozen=True)
class Point:
    """A method on the plot, in SVG coordinates and in values."""

    x: float
    y: float
    method: str
    accuracy: float
    ttc: float

    def marker(self, shape: str, size: float = 5.0) -> str:
        """The SVG path (`d`) of a marker of `shape` centred on the point."""
        return marker_path(shape, self.x, self.y, size)


@dataclass(frozen=True)
class Series:
    """A family's methods, by TTC, with its colour and marker shape."""

    family: str
    colour: str
    shape: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Tick:
    """An axis tick: its SVG coordinate and its label."""

    at: float
    label: str


@dataclass(frozen=True)
class Entry:
    """A line of the legend: a family (with its marker) or one of its methods."""

    y: float
    text: str
    colour: str
    shape: str = ""
    """The family's marker; "" for a method's line."""


@dataclass(frozen=True)
class Plot:
    """Everything the template draws."""

    width: int
    height: int
    series: tuple[Series, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple[Entry, ...] = ()
    left: int = LEFT
    top: int = TOP
    right: int = LEFT + AREA_WIDTH
    bottom: int = TOP + AREA_HEIGHT

    @property
    def legend_x(self) -> int:
        """Where the legend starts."""
        return self.right + 24


def tokens_label(value: float) -> str:
    """A token count as a tick says it: 500, 1k, 2.5k, 10k, 1M."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if round(value / scale, 2) >= 1 or scale == 1:
            n = value / scale
            return (f"{n:.3g}" if n < 1000 else f"{n:.0f}") + suffix
    raise AssertionError("unreachable")


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values in [low, high]: 1, 2 and 5 times powers of ten, or only the powers
    when that gives more than MAX_TICKS; at least the two ends when none falls inside."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for steps in ((1, 2, 5), (1,)):
        found = [
            m * 10.0**e for e in range(first, last + 1) for m in steps if low <= m * 10.0**e <= high
        ]
        if len(found) <= MAX_TICKS:
            break
    if len(found) > MAX_TICKS:  # more than eight decades: every other power
        found = found[:: math.ceil(len(found) / MAX_TICKS)]
    return found if len(found) >= 2 else [low, high]


def marker_path(shape: str, x: float, y: float, r: float) -> str:
    """An SVG path of a circle, square, triangle or diamond of radius `r` at (x, y)."""
    points = {
        "square": [(-r, -r), (r, -r), (r, r), (-r, r)],
        "triangle": [(0, -1.2 * r), (1.1 * r, r), (-1.1 * r, r)],
        "diamond": [(0, -1.3 * r), (1.3 * r, 0), (0, 1.3 * r), (-1.3 * r, 0)],
    }.get(shape)
    if points is None:  # a circle: two arcs
        arc = f"a{r:.1f},{r:.1f} 0 1,0"
        return f"M{x - r:.1f},{y:.1f}{arc} {2 * r:.1f},0{arc} {-2 * r:.1f},0"
    return "M" + "L".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in points) + "z"


def scaling_plot(summary: Mapping[str, Any]) -> Plot | None:
    """The plot of a `summary.json`'s methods with an accuracy and a positive mean TTC;
    None when there is none."""
    methods = summary.get("methods") if isinstance(summary.get("methods"), dict) else {}
    found = []
    for name, m in (methods or {}).items():
        if not isinstance(m, dict):
            continue
        acc, ttc = m.get("accuracy"), m.get("mean_ttc_tokens")
        if isinstance(acc, int | float) and isinstance(ttc, int | float) and ttc > 0:
            found.append((str(m.get("family") or name), str(name), float(acc), float(ttc)))
    if not found:
        return None
    logs = [math.log10(t) for *_, t in found]
    low, high = min(logs), max(logs)
    margin = max((high - low) * 0.08, 0.15)  # a single point sits in the middle
    low, high = low - margin, high + margin

    def x_of(value: float) -> float:
        return round(LEFT + (math.log10(value) - low) / (high - low) * AREA_WIDTH, 1)

    def y_of(accuracy: float) -> float:
        return round(TOP + AREA_HEIGHT - accuracy * AREA_HEIGHT, 1)

    grouped: dict[str, list[Point]] = {}
    for family, name, acc, ttc in found:
        grouped.setdefault(family, []).append(Point(x_of(ttc), y_of(acc), name, acc, ttc))
    series = tuple(
        Series(
            family,
            PALETTE[i % len(PALETTE)],
            SHAPES[i % len(SHAPES)],
            tuple(sorted(points, key=lambda p: p.ttc)),
        )
        for i, (family, points) in enumerate(grouped.items())
    )
    x_ticks = tuple(Tick(x_of(v), tokens_label(v)) for v in log_ticks(10**low, 10**high))
    y_ticks = tuple(Tick(y_of(a / 100), f"{a}%") for a in range(0, 101, 20))
    legend: list[Entry] = []
    for s in series:
        legend.append(Entry(TOP + LINE * len(legend) + 6, s.family, s.colour, s.shape))
        for p in s.points:
            text = f"{p.method}: {100 * p.accuracy:.1f}% at {tokens_label(p.ttc)}"
            legend.append(Entry(TOP + LINE * len(legend) + 6, text, s.colour))
    height = max(TOP + AREA_HEIGHT + 48, TOP + LINE * len(legend) + 8)
    width = LEFT + AREA_WIDTH + 24 + LEGEND_WIDTH
    return Plot(width, height, series, x_ticks, y_ticks, tuple(legend))
