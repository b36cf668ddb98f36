"""Charts of the workspace as SVG drawn on the server from the data (no script, nothing fetched):
a sparkline of a score over time and horizontal bars of signed contributions. Every text that
reaches the SVG is escaped by the template that embeds it; the numbers are formatted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sparkline:
    points: str  # the polyline's "x,y x,y ..."
    last_x: float
    last_y: float
    width: int
    height: int


def sparkline(values: Sequence[float], width: int = 160, height: int = 36) -> Sparkline | None:
    """A polyline scaled into the box (probabilities keep their 0-1 scale so trends compare)."""
    if len(values) < 2:
        return None
    lo, hi = min(0.0, min(values)), max(1.0, max(values))
    pad = 3
    step = (width - 2 * pad) / (len(values) - 1)
    xy = [
        (pad + i * step, height - pad - (v - lo) / (hi - lo) * (height - 2 * pad))
        for i, v in enumerate(values)
    ]
    return Sparkline(" ".join(f"{x:.1f},{y:.1f}" for x, y in xy), *xy[-1], width, height)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    x: float  # left edge of the bar, in percent of the chart
    width: float  # in percent
    positive: bool  # raises the churn risk


def bars(items: Sequence[tuple[str, float]]) -> list[Bar]:
    """Signed contributions as bars around a middle axis, scaled to the largest."""
    top = max((abs(v) for _, v in items), default=0.0) or 1.0
    out = []
    for label, value in items:
        w = abs(value) / top * 50.0
        out.append(Bar(label, value, 50.0 if value >= 0 else 50.0 - w, w, value >= 0))
    return out
