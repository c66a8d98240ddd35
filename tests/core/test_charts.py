"""SVG charts (numbers only) and the HTML helpers: one escaping environment, safe JSON and markup."""

import math
import xml.etree.ElementTree as ET

import jinja2
import pytest

from quanta_core.report import charts, html

SVG = "{http://www.w3.org/2000/svg}"


def test_rank_frequency_points_sit_on_log_log_axes():
    sizes = [500, 120, 40, 40, 7, 1]
    root = ET.fromstring(charts.rank_frequency_svg(sizes, width=520, height=300))
    left, top, w, h = 56, 14, 520 - 56 - 16, 300 - 14 - 42
    points = root.findall(f"{SVG}circle")
    assert [int(p.get("data-rank")) for p in points] == list(range(len(sizes)))
    for rank, (point, size) in enumerate(zip(points, sizes)):
        x = left + w * math.log10(rank + 1) / math.log10(len(sizes))
        y = top + h * (1 - math.log10(size) / math.log10(max(sizes)))
        assert float(point.get("cx")) == pytest.approx(x, abs=0.05)
        assert float(point.get("cy")) == pytest.approx(y, abs=0.05)
        assert point.find(f"{SVG}title").text == f"cluster {rank}: {size} samples"


def test_sparkline_refuses_a_bad_range_and_names_itself_in_numbers():
    with pytest.raises(ValueError, match="bad y range"):
        charts.sparkline_svg([0, 1], [1.0, 2.0], y_range=(0.0, math.inf))
    with pytest.raises(ValueError, match="bad y range"):
        charts.sparkline_svg([0, 1], [1.0, 2.0], y_range=(3.0, 1.0))
    svg = charts.sparkline_svg([0, 10], [2.0, 1.0], learned_at_step=10)
    assert ET.fromstring(svg).get("aria-label") == "loss 2 nats at step 0 to 1 at step 10; learned at step 10"


def test_loss_over_training_has_titled_axes_at_the_points_it_draws():
    steps, losses = [0, 1, 3, 9, 99, 999], [10.8, 9.0, math.nan, 6.5, 4.25, 3.5]
    root = ET.fromstring(charts.loss_over_training_svg(steps, losses, width=560, height=200))
    left, right, top, bottom = 52, 14, 10, 34
    lines = root.findall(f"{SVG}line")
    x_axis, y_axis = lines[0], lines[1]  # the frame: along the bottom and the left of the plot
    assert [float(x_axis.get(a)) for a in ("x1", "y1", "x2", "y2")] == [left, 200 - bottom, 560 - right, 200 - bottom]
    assert [float(y_axis.get(a)) for a in ("x1", "y1", "x2", "y2")] == [left, 200 - bottom, left, top]
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert [t for t in labels if t in {"0", "1", "10", "100", "1k"}] == ["0", "1", "10", "100"]  # steps ≤ 999
    assert "3.5" in labels and "10.8" in labels  # the y range in nats
    assert "training step (log scale, step + 1)" in labels and "mean loss (nats)" in labels
    pieces = root.findall(f"{SVG}polyline")
    assert len(pieces) == 2  # broken at the NaN
    first = [tuple(map(float, p.split(","))) for p in pieces[0].get("points").split()]
    w, h = 560 - left - right, 200 - top - bottom
    assert first[0] == pytest.approx((left, top), abs=0.01)  # step 0 at the origin, the highest loss at the top
    assert first[1] == pytest.approx((left + w * math.log10(2) / 3, top + h * (10.8 - 9.0) / 7.3), abs=0.01)
    assert root.get("aria-label") == "mean loss (nats): 10.8 at step 0 to 3.5 at step 999"


def test_one_environment_escapes_and_refuses_missing_values():
    template = html.ENV.from_string("<p>{{ text }}</p>{{ svg }}")
    out = template.render(text="<script>x</script>", svg=html.svg_markup("<svg><rect/></svg>"))
    assert out == "<p>&lt;script&gt;x&lt;/script&gt;</p><svg><rect/></svg>"
    with pytest.raises(jinja2.UndefinedError):
        template.render(text="only")
    for bad in ("<img src=x onerror=alert(1)>", "<svg><script>alert(1)</script></svg>", " <SVG><SCRIPT>"):
        with pytest.raises(ValueError, match="the chart must be a plain <svg>"):
            html.svg_markup(bad, "the chart")


def test_script_hash_is_the_csp_source_of_the_script():
    import base64
    import hashlib

    script = "console.log('é')"
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    assert html.script_hash(script) == f"sha256-{digest}"
    assert str(html.script_json({"a": "</script>"})) == '{"a":"\\u003c/script\\u003e"}'
