"""Quanta across training: loss curves per cluster, learned-at steps, sparklines, the model page
(no Dagster here: the asset is tested in tests/assets/test_dynamics_assets.py)."""

import math
import tracemalloc
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from quanta_core.learning import dynamics
from quanta_core.report import charts, dynamics_page

SVG = "{http://www.w3.org/2000/svg}"
THRESHOLD = 1.0
STEPS = [0, 1, 2, 4, 8, 512, 1000, 2000]
# cluster → its mean loss at each of STEPS, and the learned-at step these imply for THRESHOLD
PLANNED = {
    0: ([9.0, 5.0, 2.0, 0.5, 0.4, 0.3, 0.2, 0.2], 4),
    1: ([9.0, 9.0, 8.0, 6.0, 3.0, 1.5, 0.6, 0.5], 1000),
    2: ([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.5], None),  # never
    3: ([9.0, 2.0, 0.5, 0.6, 1.5, 0.7, 0.8, 0.9], 512),  # dips below early, rises, then stays below
    4: ([0.5, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1], 0),  # below from step0 on
    5: ([9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 0.9], 2000),  # only the last step
    6: ([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0], None),  # exactly the threshold: not below
}


def _synthetic(tmp_path, num_entries=4000, per_cluster=(30, 7, 12, 1, 20, 5, 9), seed=0):
    """Loss tables (.npy, float32 [G]) whose clusters have exactly the PLANNED means."""
    rng = np.random.default_rng(seed)
    sizes = dict(zip(PLANNED, per_cluster))
    indices = rng.choice(num_entries, sum(sizes.values()), replace=False).astype(np.int64)
    labels = np.concatenate([np.full(n, k, dtype=np.int64) for k, n in sizes.items()])
    perm = rng.permutation(len(indices))  # clusters interleaved in sample order
    indices, labels = indices[perm], labels[perm]
    tables = {}
    for t, step in enumerate(STEPS):
        table = rng.uniform(0.0, 10.0, num_entries).astype(np.float32)
        for k, (means, _) in PLANNED.items():
            members = indices[labels == k]
            offsets = (np.arange(len(members)) - (len(members) - 1) / 2) / 256  # symmetric, exact in float32
            table[members] = (np.float32(means[t]) + offsets).astype(np.float32)
        path = tmp_path / f"step{step}.npy"
        np.save(path, table)
        tables[f"step{step}"] = path
    return indices, labels, tables


def _naive_learned(values, steps, threshold):
    for i in range(len(values)):
        if all(v < threshold for v in values[i:]):
            return steps[i]
    return None


def test_curves_match_a_naive_computation(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, dict(reversed(list(tables.items()))))
    assert list(curves.columns) == dynamics.CURVE_COLUMNS
    assert curves["step_number"].tolist() == sorted(curves["step_number"].tolist())
    assert len(curves) == len(STEPS) * len(PLANNED)
    for step, path in tables.items():
        table = np.load(path).astype(np.float64)
        rows = curves[curves["step"] == step].set_index("cluster")
        assert rows["overall_mean"].iloc[0] == pytest.approx(table.mean(), rel=1e-12)
        for k in PLANNED:
            x = table[indices[labels == k]]
            row = rows.loc[k]
            assert row["n"] == len(x)
            assert row["mean"] == pytest.approx(x.mean(), rel=1e-12)
            assert row["median"] == pytest.approx(np.median(x), rel=1e-12)
            assert row["q25"] == pytest.approx(np.percentile(x, 25), rel=1e-12)
            assert row["q75"] == pytest.approx(np.percentile(x, 75), rel=1e-12)


def test_learned_at_gives_exactly_the_planned_steps(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    learned = dynamics.learned_at(curves, THRESHOLD)
    assert learned["cluster"].tolist() == list(PLANNED)
    for row in learned.itertuples(index=False):
        expected = PLANNED[row.cluster][1]
        got = None if pd.isna(row.learned_at_step) else int(row.learned_at_step)
        assert got == expected, f"cluster {row.cluster}"
        assert row.learned_at == (None if expected is None else f"step{expected}")
    hist = dynamics.learned_at_histogram(learned)
    assert hist["learned_at"].tolist() == ["step0", "step4", "step512", "step1000", "step2000", "never"]
    assert hist["clusters"].tolist() == [1, 1, 1, 1, 1, 2]
    assert hist["cumulative_fraction"].iloc[-1] == pytest.approx(1.0)


def test_learned_at_agrees_with_a_naive_loop_on_random_curves():
    rng = np.random.default_rng(1)
    steps = [0, 1, 2, 4, 1000, 2000, 3000]
    rows = []
    for k in range(200):
        walk = np.abs(5 - np.cumsum(rng.normal(0.7, 1.0, len(steps))))
        rows += [dict(step=f"step{s}", step_number=s, cluster=k, n=3, mean=v, median=v, q25=v, q75=v)
                 for s, v in zip(steps, walk)]
    curves = pd.DataFrame(rows)
    for threshold in (0.5, 1.0, 2.5):
        learned = dynamics.learned_at(curves, threshold, statistic="median")
        for row in learned.itertuples(index=False):
            values = curves[curves["cluster"] == row.cluster]["median"].tolist()
            expected = _naive_learned(values, steps, threshold)
            assert (None if pd.isna(row.learned_at_step) else int(row.learned_at_step)) == expected


def test_loss_tables_are_memory_mapped_and_never_copied_whole(tmp_path, monkeypatch):
    num_entries = 2_000_000  # 8 MB per table
    rng = np.random.default_rng(2)
    indices = rng.choice(num_entries, 1000, replace=False).astype(np.int64)
    labels = rng.integers(0, 10, 1000).astype(np.int64)
    tables = {}
    for step in (0, 1, 2, 4):
        path = tmp_path / f"step{step}.npy"
        np.save(path, rng.uniform(0, 10, num_entries).astype(np.float32))
        tables[f"step{step}"] = path
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(dynamics.np, "load", spy)
    tracemalloc.start()
    try:
        curves = dynamics.cluster_loss_curves(indices, labels, tables)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls == ["r"] * len(tables)
    assert peak < 1_000_000, f"peak traced memory {peak:,} bytes for 8 MB tables"
    # memmaps passed directly give the same result, also without a whole copy
    monkeypatch.setattr(dynamics.np, "load", real_load)
    maps = {s: np.load(p, mmap_mode="r") for s, p in tables.items()}
    tracemalloc.start()
    try:
        again = dynamics.cluster_loss_curves(indices, labels, maps)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
    pd.testing.assert_frame_equal(curves, again)


def test_bad_inputs_fail_clearly(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    with pytest.raises(IndexError, match="step0.*4,000 entries"):
        dynamics.cluster_loss_curves(np.append(indices, 4000), np.append(labels, 0), tables)
    with pytest.raises(FileNotFoundError, match="step9"):
        dynamics.cluster_loss_curves(indices, labels, {"step9": tmp_path / "missing.npy"})
    broken = np.load(tables["step4"])
    broken[indices[0]] = np.nan
    with pytest.raises(ValueError, match="step4.*non-finite"):
        dynamics.cluster_loss_curves(indices, labels, {"step4": broken})
    elsewhere = np.ones(4000, dtype=np.float32)
    elsewhere[np.setdiff1d(np.arange(4000), indices)[0]] = np.inf
    with pytest.raises(ValueError, match="step4.*non-finite"):
        dynamics.cluster_loss_curves(indices, labels, {"step4": elsewhere})
    with pytest.raises(ValueError, match="1-D float"):
        dynamics.cluster_loss_curves(indices, labels, {"step4": np.ones((2, 4000), dtype=np.float32)})
    with pytest.raises(ValueError, match="step name"):
        dynamics.cluster_loss_curves(indices, labels, {"final": tables["step0"]})
    with pytest.raises(ValueError, match="equal length"):
        dynamics.cluster_loss_curves(indices, labels[:-1], tables)
    curves = dynamics.cluster_loss_curves(indices, labels, {"step0": tables["step0"]})
    with pytest.raises(ValueError, match="statistic"):
        dynamics.learned_at(curves, 1.0, statistic="max")
    with pytest.raises(ValueError, match="threshold"):
        dynamics.learned_at(curves, float("nan"))


def _points(element):
    return [tuple(map(float, p.split(","))) for p in element.get("points").split()]


def test_sparkline_is_well_formed_with_a_log_axis_that_handles_step0():
    steps = [0, 1, 2, 4, 512, 1000, 143000]
    values = [10.8, 9.0, float("nan"), 6.0, 3.0, 1.0, 0.05]
    svg = charts.sparkline_svg(steps, values, [10.9, 9.5, 9.0, 8.0, 5.0, 4.0, 3.0], learned_at_step=1000,
                                 width=200, height=40, band=(values, values), threshold_nats=0.1)
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("width") == "200"
    lines = root.findall(f"{SVG}polyline")
    main = [p for p in lines if p.get("stroke") == "currentColor"]
    assert len(main) == 2  # the NaN at step2 breaks the line
    xs = [x for part in main for x, _ in _points(part)]
    expected = [2 + math.log10(s + 1) / math.log10(143001) * 196 for s in (0, 1, 4, 512, 1000, 143000)]
    assert xs == pytest.approx(expected, abs=0.01)  # step0 at the left edge, log10(step + 1) spacing
    reference = [p for p in lines if p.get("stroke") == "#868e96"]
    assert len(reference) == 1 and len(_points(reference[0])) == len(steps)
    marks = [ln for ln in root.findall(f"{SVG}line") if ln.get("stroke") == "#e8590c"]
    assert len(marks) == 1 and float(marks[0].get("x1")) == pytest.approx(expected[4], abs=0.01)
    assert "learned at step 1000" in root.find(f"{SVG}title").text
    # a single step, constant values and no reference still give valid SVG
    ET.fromstring(charts.sparkline_svg([0], [1.0], None))
    ET.fromstring(charts.sparkline_svg([0, 1], [1.0, 1.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="entries"):
        charts.sparkline_svg([0, 1], [1.0], None)


def test_distribution_svg_counts_clusters_per_step():
    svg = charts.learned_at_distribution_svg([0, 4, 4, 1000, None, None, None], [0, 1, 2, 4, 1000, 2000])
    root = ET.fromstring(svg)
    titles = [r.find(f"{SVG}title").text for r in root.iter(f"{SVG}rect")]
    assert titles == ["step 0: 1 cluster learned", "step 4: 2 clusters learned",
                      "step 1000: 1 cluster learned", "never learned: 3 clusters"]
    assert root.find(f"{SVG}title").text == "4 of 7 clusters learned by step 2000"
    with pytest.raises(ValueError, match="not among"):
        charts.learned_at_distribution_svg([3], [0, 1, 2])


def test_page_escapes_token_text_and_extras_have_the_report_structure(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    learned = dynamics.learned_at(curves, THRESHOLD)
    page = dynamics_page.render_dynamics_page(
        "quanta-demo", "step2000", curves, learned, {"threshold_nats": THRESHOLD},
        top_tokens={0: ["<script>alert(1)</script>", " the"]},
    )
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert page.split('<table id="clusters">')[1].count('class="sparkline"') == len(PLANNED)
    order = [int(part.split('"')[0]) for part in page.split('<tr id="cluster-')[1:]]
    assert order == [4, 0, 3, 1, 5, 2, 6]  # by learned-at step, never last, ties by rank
    overall = page.split('class="loss-over-training"')[1].split("</svg>")[0]  # the overall mean, with axes
    assert "training step (log scale, step + 1)" in overall and "mean loss (nats)" in overall
    extras = dynamics_page.cluster_extras_for_report(curves, learned)
    assert set(extras) == set(PLANNED)
    for k, extra in extras.items():
        assert set(extra) == {"learned_at", "learned_at_step", "sparkline_svg", "learned_at_rule"}
        assert extra["learned_at_step"] == PLANNED[k][1]
        assert extra["learned_at_step"] is None or type(extra["learned_at_step"]) is int
        assert extra["learned_at"] == (None if PLANNED[k][1] is None else f"step{PLANNED[k][1]}")
        ET.fromstring(extra["sparkline_svg"])
    section = dynamics_page.distribution_section_html(learned, curves)
    assert section.startswith("<section") and "learned-at-distribution" in section


def test_stored_dynamics_feed_the_report_of_the_reference_step_only(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    learned = dynamics.learned_at(curves, THRESHOLD)
    value = {"curves": curves, "learned_at": learned, "summary": {"reference_step": "step2000"}, "page": "<html>"}
    stored = dynamics.TrainingDynamics.from_stored(value)  # the dict the IO manager loads back
    assert stored.reference_step == "step2000" and stored.curves is curves and stored.learned is learned
    extras, sections = dynamics_page.report_extras(stored, "step2000")
    assert extras == dynamics_page.cluster_extras_for_report(curves, learned)
    assert sections == [dynamics_page.distribution_section_html(learned, curves)]
    assert f"({len(STEPS)} checkpoints, step 0 to 2000)" in sections[0]
    assert dynamics_page.report_extras(stored, "step1000") == ({}, [])  # other steps' ranks are other clusters
    assert dynamics_page.report_extras(None, "step2000") == ({}, [])  # not materialized
    with pytest.raises(ValueError, match=r"lack \['learned_at'\]"):
        dynamics.TrainingDynamics.from_stored({"curves": curves, "summary": {"reference_step": "step0"}})
    with pytest.raises(ValueError, match="must be DataFrames"):
        dynamics.TrainingDynamics.from_stored({**value, "curves": curves.to_dict()})
    with pytest.raises(ValueError, match="reference_step"):
        dynamics.TrainingDynamics.from_stored({**value, "summary": {}})


def test_page_links_the_report_only_when_told(tmp_path):
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    learned = dynamics.learned_at(curves, THRESHOLD)
    plain = dynamics_page.render_dynamics_page("quanta-demo", "step2000", curves, learned)
    assert "quanta_report.html" not in plain and "<h2>Settings</h2>" not in plain
    linked = dynamics_page.render_dynamics_page("quanta-demo", "step2000", curves, learned,
                                                report_href="../step2000/quanta_report.html")
    assert '<a href="../step2000/quanta_report.html">Open the step2000 cluster report</a>' in linked


def test_whitespace_targets_are_visible_chips_as_on_the_report(tmp_path, tokenizer):
    """A target that is a space, a newline or a tab is a chip with the report's marks (·, ↵, →), never blank."""
    import re
    from pathlib import Path

    from quanta_core.report.token_text import WHITESPACE_MARKS

    js = (Path(dynamics_page.__file__).parent / "templates" / "report.js.j2").read_text(encoding="utf-8")
    for ch, mark in WHITESPACE_MARKS.items():  # the same marks as the report's labels
        assert re.search(rf'"{re.escape(mark)}"', js), f"{ch!r} → {mark} is not the report's mark"
    ids = {text: tokenizer.encode(text).ids for text in (" ", "\n", "\t", " the")}
    assert all(len(v) == 1 for v in ids.values())
    tokens = pd.DataFrame({"cluster": [0, 0, 0, 1], "token_id": [ids[t][0] for t in (" ", " ", "\n", "\t")]})
    tokens = pd.concat([tokens, pd.DataFrame({"cluster": [1, 1], "token_id": [ids[" the"][0]] * 2})])
    top = dynamics_page.top_tokens(tokens, 3)
    assert top == {0: ["·", "↵"], 1: ["·the", "→"]}
    indices, labels, tables = _synthetic(tmp_path)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    page = dynamics_page.render_dynamics_page("quanta-demo", "step2000", curves, dynamics.learned_at(curves, THRESHOLD),
                                              {"threshold_nats": THRESHOLD}, top_tokens=top)
    chips = re.findall(r'<code class="tok">(.*?)</code>', page, flags=re.S)
    assert chips and all(chip.strip() for chip in chips)
