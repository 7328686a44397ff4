"""The overview's server-drawn chart: every point inside the drawing, the top a round number above the peak."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.console.chart import HEIGHT, WIDTH, line_chart

rows = st.lists(
    st.fixed_dictionaries({"received": st.integers(0, 10**9), "completed": st.integers(0, 10**9)}),
    min_size=1,
    max_size=120,
)


@given(rows)
def test_every_point_is_inside_the_drawing_and_the_top_is_round(data):
    """x in [0, WIDTH], y in [0, HEIGHT], one point per row per series; top >= peak, of the form 1, 2 or 5 x 10^k."""
    chart = line_chart(data, ("received", "completed"))
    peak = max(max(r["received"], r["completed"]) for r in data)
    points = {key: [tuple(map(float, p.split(","))) for p in line.split()] for key, line in chart.lines.items()}
    mantissa = int(str(chart.top).rstrip("0") or "0")

    assert all(len(p) == len(data) for p in points.values())
    assert all(0 <= x <= WIDTH and 0 <= y <= HEIGHT for p in points.values() for x, y in p)
    assert chart.top >= max(peak, 1) and mantissa in (1, 2, 5)
    assert chart.totals == {key: sum(r[key] for r in data) for key in ("received", "completed")}


def test_the_peak_touches_the_top_when_it_is_round():
    """A peak of 50 draws at y = 0 (the top edge), a zero at y = HEIGHT."""
    chart = line_chart([{"n": 0}, {"n": 50}], ("n",))

    assert f"0.0,{HEIGHT:.1f} {WIDTH:.1f},0.0" == chart.lines["n"]
