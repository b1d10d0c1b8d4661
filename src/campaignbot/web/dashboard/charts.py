"""Pure geometry for the dashboard's inline SVG charts (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    #: polyline points "x,y x,y ..."
    points: str
    bars: list[tuple[float, float, float, float]]  # x, y, width, height
    ticks: list[Mark]
    top: int


def growth_chart(
    series: Sequence[tuple[date, int, int]], *, width: int = 640, height: int = 180
) -> Chart:
    """A line of the list's size and bars of daily sign-ups over `series` (oldest first)."""
    pad_l, pad_r, pad_t, pad_b = 48, 8, 8, 24
    inner_w, inner_h = width - pad_l - pad_r, height - pad_t - pad_b
    top = max([total for _, _, total in series] + [1])
    n = max(len(series), 1)
    step = inner_w / n

    def y(value: int) -> float:
        return round(pad_t + inner_h * (1 - value / top), 1)

    points = " ".join(
        f"{round(pad_l + step * (i + 0.5), 1)},{y(total)}" for i, (_, _, total) in enumerate(series)
    )
    bars = [
        (
            round(pad_l + step * i + 1, 1),
            y(new),
            round(max(step - 2, 1), 1),
            round(pad_t + inner_h - y(new), 1),
        )
        for i, (_, new, _) in enumerate(series)
        if new
    ]
    ticks = [
        Mark(round(pad_l + step * (i + 0.5), 1), height - 6, day.strftime("%d %b"))
        for i, (day, _, _) in enumerate(series)
        if i % 15 == 0 or i == len(series) - 1
    ]
    return Chart(width, height, points, bars, ticks, top)


@dataclass(frozen=True)
class TimelineAxis:
    width: int
    height: int
    dots: list[Mark]
    ticks: list[Mark]


def timeline_axis(
    due: Sequence[tuple[datetime, str]], *, start: datetime, end: datetime, width: int = 640
) -> TimelineAxis:
    """A dot per alert at its due time on an axis from `start` to `end`, a tick per week."""
    pad = 16
    span = (end - start).total_seconds() or 1.0

    def x(at: datetime) -> float:
        return round(pad + (width - 2 * pad) * (at - start).total_seconds() / span, 1)

    dots = [Mark(x(at), 28, label) for at, label in due]
    days = int(span // 86400)
    ticks = [
        Mark(
            x(start + (end - start) * (d / days)),
            60,
            (start + (end - start) * (d / days)).strftime("%d %b"),
        )
        for d in range(0, days + 1, 7)
    ]
    return TimelineAxis(width, 72, dots, ticks)
