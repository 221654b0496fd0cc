"""The handled-per-second chart: rates from sampled totals, and the SVG drawn from them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from statusq.web.chart import HEIGHT, LEFT, RIGHT, TOP, WIDTH, Point, RateHistory, chart_svg, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"


def test_rates_are_differences_of_totals_over_time() -> None:
    history = RateHistory(window=600)
    history.add_total(100.0, 50)
    assert history.points() == []  # one total is no rate yet
    history.add_total(105.0, 75)
    history.add_total(110.0, 75)
    assert history.points() == [Point(105.0, 5.0), Point(110.0, 0.0)]
    assert history.problem is None


def test_a_counter_that_went_down_gives_no_negative_rate() -> None:
    history = RateHistory(window=600)
    history.add_total(0.0, 100)
    history.add_total(5.0, 3)  # the daemon restarted
    history.add_total(10.0, 13)
    assert history.points() == [Point(10.0, 2.0)]


def test_an_outage_is_remembered_and_not_averaged_over() -> None:
    history = RateHistory(window=600)
    history.add_total(0.0, 0)
    history.failed("cannot read http://x/metrics")
    assert history.problem == "cannot read http://x/metrics"
    history.add_total(60.0, 600)  # 10/s over the outage: unknown, not drawn
    history.add_total(65.0, 610)
    assert history.points() == [Point(65.0, 2.0)]
    assert history.problem is None


def test_points_older_than_the_window_are_dropped() -> None:
    history = RateHistory(window=10)
    for second in range(0, 30, 5):
        history.add_total(float(second), float(second))
    assert [p.at for p in history.points()] == [15.0, 20.0, 25.0]


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.3, 1), (1.5, 2), (2, 2), (3, 5), (7, 10), (12, 20), (4200, 5000)]
)
def test_axis_maximum_is_a_round_number(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == ceiling


def test_the_chart_is_valid_svg_with_points_inside_the_plot() -> None:
    points = [Point(940.0, 0.0), Point(970.0, 40.0), Point(1000.0, 20.0)]
    svg = chart_svg(points, now=1000.0, window=600)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    line = root.find(f"{SVG}polyline")
    assert line is not None
    coords = [tuple(map(float, pair.split(","))) for pair in line.attrib["points"].split()]
    assert len(coords) == 3
    for x, y in coords:
        assert LEFT <= x <= WIDTH - RIGHT and TOP <= y <= HEIGHT
    # The largest rate (40) reaches the top of a 50-high axis at 80%; the last point is "now".
    assert coords[1][1] < coords[2][1] < coords[0][1]
    assert coords[2][0] == WIDTH - RIGHT
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert "50" in labels and "now" in labels and "-10 min" in labels


def test_an_empty_chart_says_no_data() -> None:
    root = ET.fromstring(chart_svg([], now=0.0, window=60))
    assert root.find(f"{SVG}polyline") is None
    assert "no data yet" in [t.text for t in root.iter(f"{SVG}text")]
    assert "-1 min" in [t.text for t in root.iter(f"{SVG}text")]


def test_the_title_is_escaped() -> None:
    svg = chart_svg([], now=0.0, window=60, title="<script>x</script>")
    assert "<script>" not in svg
    assert ET.fromstring(svg).find(f"{SVG}title").text == "<script>x</script>"  # type: ignore[union-attr]
    assert not re.search(r"nan|inf", svg)
