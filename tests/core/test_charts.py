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
