"""The report's SVG charts (pipeline/draw/charts.py) against matplotlib, which drew them before: the same palette, the
same bin counts for the same data and edges; and the SVG itself well-formed, escaped, with what it claims to draw."""

import random
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from pipeline.draw.charts import KEPT_COLOR, TAB20, hbars, histogram, histogram_counts, nice_ticks, reason_color

pytestmark = pytest.mark.fast
NS = "{http://www.w3.org/2000/svg}"


def test_palette_is_matplotlibs_tab20():
    import matplotlib
    from matplotlib import colors

    cmap = matplotlib.colormaps["tab20"]
    assert list(TAB20) == [colors.to_hex(cmap(i)) for i in range(20)]


@pytest.mark.parametrize("seed", range(6))
def test_bin_counts_equal_matplotlibs_hist(seed):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rng = random.Random(seed)
    values = [rng.choice([rng.random(), rng.gauss(3, 2), float(rng.randint(0, 5))]) for _ in range(rng.randint(1, 400))]
    lo, hi = min(values), max(values) + (seed % 2)  # values on the last edge, and not
    edges = np.linspace(lo, hi if hi > lo else lo + 1, rng.randint(5, 40) + 1)
    n, bins, _ = Figure().add_subplot().hist(values, bins=edges, histtype="stepfilled")
    assert list(histogram_counts(values, edges)) == list(n.astype(int))
    assert list(bins) == list(edges)


def test_histogram_svg_draws_each_part_and_every_threshold():
    svg = histogram("score <b>&</b> (n=5)", [("kept", KEPT_COLOR, [1.0, 2.0, 2.5]), ("rejected", "#e57373", [0.5, 9.0]),
                                             ("empty", "#000000", [])], [("min_score", 3.0), ("far", 20.0)], bins=8)
    root = ET.fromstring(svg)  # well-formed: the title's markup escaped
    assert root.find(f"{NS}title").text == "score <b>&</b> (n=5)"
    assert len(root.findall(f"{NS}polygon")) == 2  # the empty part draws nothing
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "min_score 3" in texts and "far 20" in texts and "kept (3)" in texts and "rejected (2)" in texts
    dashed = [e for e in root.iter(f"{NS}line") if e.get("stroke-dasharray")]
    xs = sorted(float(e.get("x1")) for e in dashed)
    assert len(xs) == 2 and xs[1] <= float(root.get("width"))  # a threshold beyond the data widens the axis


def test_histogram_of_one_value_and_nice_ticks():
    ET.fromstring(histogram("constant", [("kept", KEPT_COLOR, [4.0, 4.0])]))
    for lo, hi in ((0, 1), (0, 137), (0.0004, 0.0013), (-3.5, 12.25), (0, 23_456)):
        ticks = nice_ticks(lo, hi)
        assert 2 <= len(ticks) <= 5 and all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert round(mantissa, 6) in (1, 2, 5)


def test_stacked_bars_one_rect_per_nonzero_value_and_stable_colours():
    series = [("kept", KEPT_COLOR, [5, 2]), ("too_short", reason_color("too_short"), [1, 0])]
    svg = hbars(["ingest", "filter<x>"], series, "documents")
    root = ET.fromstring(svg)
    bars = [r for r in root.iter(f"{NS}rect") if r.find(f"{NS}title") is not None]
    assert len(bars) == 3
    widths = {r.find(f"{NS}title").text: float(r.get("width")) for r in bars}
    assert widths["ingest: kept 5"] == pytest.approx(2.5 * widths["filter<x>: kept 2"], abs=0.2)
    assert reason_color("too_short") == reason_color("too_short") not in (TAB20[4], TAB20[5])
