"""A server-drawn line chart (SVG coordinates only: the console's CSP allows no script or inline style)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Drawing area in SVG user units; the SVG scales to its container.
WIDTH, HEIGHT = 600, 140


@dataclass(frozen=True, slots=True)
class Chart:
    """Polylines ready for ``<polyline points=...>``: ``lines`` maps each series to its points ("x,y x,y");
    ``top`` is the value at the top edge (a round number at or above the largest value)."""

    lines: dict[str, str]
    totals: dict[str, int]
    top: int
    width: int = WIDTH
    height: int = HEIGHT


def line_chart(rows: Sequence[Mapping[str, Any]], series: tuple[str, ...]) -> Chart:
    """One line per ``series`` key over ``rows`` (evenly spaced, oldest at the left).

    Args:
        rows: At least one row, each with a number under every key of ``series``.
    """
    peak = max((int(r[key]) for r in rows for key in series), default=0)
    top = _round_up(peak)
    step = WIDTH / max(len(rows) - 1, 1)
    lines = {
        key: " ".join(f"{i * step:.1f},{HEIGHT - HEIGHT * int(r[key]) / top:.1f}" for i, r in enumerate(rows))
        for key in series
    }
    return Chart(lines, {key: sum(int(r[key]) for r in rows) for key in series}, top)


def _round_up(value: int) -> int:
    """1, 2, 5 times a power of ten, at least ``value`` (and at least 1)."""
    scale = 1
    while True:
        for factor in (1, 2, 5):
            if factor * scale >= value:
                return factor * scale
        scale *= 10
