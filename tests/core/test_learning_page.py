"""The learning-time views (no Dagster): the model page's spectrum and learned-at-once sections, the
report's per-cluster sentence, the family page — content from the numbers given, and every text
escaped."""

import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from quanta_core import store
from quanta_core.learning import dynamics
from quanta_core.learning.clusters import TEST_NAME, learned_at_once
from quanta_core.learning.scale import fit_scale_curves
from quanta_core.learning.spectrum import learning_time_spectrum
from quanta_core.learning.times import fit_learning_times
from quanta_core.report import dynamics_page, learning_page
from quanta_core.report.learning_page import LearningTimesView
from quanta_core.report.page import render_report, report_data
from quanta_core.report.token_text import token_bytes_table

from support.learning_synthetic import sigmoid
from support.report_corpus import all_samples, build_corpus

STEPS = ["step0", "step1", "step2", "step4", "step8", "step16", "step32", "step64", "step128", "step256"]
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def learning():
    """Fits, spectrum and the learned-at-once test of 2,000 synthetic tokens; 3 clusters of 25,
    cluster 0 learned at once."""
    rng = np.random.default_rng(5)
    x = np.log10(np.array([int(s[4:]) for s in STEPS]) + 1.0)
    mid = rng.uniform(0.3, 2.2, 2000)
    indices = rng.choice(2000, 75, replace=False)
    mid[indices[:25]] = 1.0
    y = sigmoid(x[:, None], rng.uniform(0, 2, 2000), rng.uniform(3, 6, 2000), mid, 0.1) + rng.normal(0, .05, (10, 2000))
    tables = {s: y[t].astype(np.float32) for t, s in enumerate(STEPS)}
    fits = fit_learning_times(tables)
    spectrum = learning_time_spectrum(fits)
    labels = np.repeat(np.arange(3), 25)
    table, summary = learned_at_once(indices, labels, fits, y[-1, indices], permutations=199)
    view = LearningTimesView(fits.frame()[["midpoint_x", "flags"]], spectrum.bins, spectrum.summary, fits.summary)
    curves = dynamics.cluster_loss_curves(indices, labels, tables)
    return view, table, summary, curves, dynamics.learned_at(curves, 1.0)


def test_view_reads_what_the_asset_stores(tmp_path, learning):
    view, *_ = learning
    written = store.write_value(tmp_path / "token_learning_times", {
        "fits": view.fits.assign(width=0.1), "points": pd.DataFrame({"x": [0.0]}), "summary": view.summary,
        "spectrum": view.spectrum, "spectrum_summary": view.spectrum_summary})
    back = LearningTimesView.read(written)
    assert list(back.fits.columns) == ["midpoint_x", "flags"]  # only what the pages need
    pd.testing.assert_frame_equal(back.spectrum, view.spectrum)
    assert back.spectrum_summary["reconstruction_error"] == pytest.approx(view.spectrum_summary["reconstruction_error"])
    (written / "spectrum.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="lacks spectrum.parquet"):
        LearningTimesView.read(written)


def test_model_page_shows_spectrum_error_and_statistic(learning):
    view, table, summary, curves, learned = learning
    page = dynamics_page.render_dynamics_page(EVIL, "step256", curves, learned, settings={"k": EVIL},
                                              top_tokens={0: [EVIL]}, learning=view, together=(table, summary))
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"Reconstruction error {view.spectrum_summary['reconstruction_error']:.3f}" in page
    assert f"{100 * view.spectrum_summary['explained_fraction']:.1f} %" in page
    tested, tighter = summary["tested"], summary["tighter"]
    assert tested == 3 and tighter >= 1 and table.loc[0, "tighter"]
    assert f"{tighter} of {tested} tested clusters are learned more tightly together than random groups" in page
    assert TEST_NAME in page and learning_page.BASELINE in page and "199 permutations" in page
    for css in ("learning-spectrum", "learned-together"):  # both charts, well-formed SVG
        svg = re.search(rf'<svg [^>]*class="{css}".*?</svg>', page, re.S).group(0)
        ET.fromstring(svg)
    cell = learning_page.cluster_columns(table)[0]
    assert cell["text"] in page and cell["tighter"]
    plain = dynamics_page.render_dynamics_page("m", "step256", curves, learned)  # without learning times
    assert "learning-spectrum" not in plain and "learning-time IQR" not in plain


def test_sentences_come_from_the_numbers(learning):
    _, table, summary, _, _ = learning
    row = table.set_index("cluster").loc[1]
    sentence = learning_page.cluster_sentences(table)[1]
    assert f"IQR {row.iqr:.2f} decades vs {row.null_iqr_median:.2f}" in sentence
    assert f"p = {row.p_value:.3g}" in sentence and f"q = {row.q_value:.3g}" in sentence
    none = learning_page.together_sentence({"tested": 0, "min_tokens": 5, "clusters": 4})
    assert none.startswith("No cluster has 5 or more well-fit tokens")


def test_report_panel_sentence_is_data_not_markup(tokenizer):
    corpus = build_corpus(tokenizer)
    samples = all_samples(corpus)
    table = token_bytes_table(tokenizer)
    extras = {0: {"learned_at": "step4", "learned_at_step": 4, "sparkline_svg": "<svg></svg>",
                  "learned_together": "learned around step 12 " + EVIL}}
    data = report_data(samples, corpus, table, cluster_extras=extras)["data"]
    assert data["clusters"][0]["learnedTogether"] == "learned around step 12 " + EVIL
    assert "learnedTogether" not in data["clusters"][1]
    html = render_report(samples, corpus, table, cluster_extras=extras)
    assert EVIL not in html and "\\u003cscript\\u003ealert(1)" in html  # inside the JSON block, escaped
    assert 'together.textContent = "Tokens\' learning time: " + c.learnedTogether' in html  # shown as text


def test_report_extras_carry_the_test_of_the_reference_step(learning):
    _, table, summary, curves, learned = learning
    stored = dynamics.TrainingDynamics(curves, learned, {"reference_step": "step256"}, table, summary)
    extras, sections = dynamics_page.report_extras(stored, "step256")
    assert extras[0]["learned_together"] == learning_page.cluster_sentences(table)[0]
    assert len(sections) == 2 and "Are quanta learned at once?" in sections[1]
    assert dynamics_page.report_extras(stored, "step128") == ({}, [])
    with pytest.raises(ValueError, match="come together"):
        dynamics.TrainingDynamics.from_stored({"curves": curves, "learned_at": learned,
                                               "summary": {"reference_step": "step256"}, "learned_together": table})


def test_the_card_names_its_two_learning_steps(learning, tokenizer):
    """The cluster's learned-at step (mean loss below the threshold from then on) and its tokens' median
    learning time (sigmoid midpoints) are two measures: the card names each and says they differ."""
    _, table, summary, curves, learned = learning
    stored = dynamics.TrainingDynamics(curves, learned, {"reference_step": "step256"}, table, summary)
    extras, _ = dynamics_page.report_extras(stored, "step256")
    threshold = f"{float(learned['threshold_nats'].iloc[0]):.3g}"
    assert extras[0]["learned_at_rule"] == f"the first checkpoint from which its mean loss stays below {threshold} nats"
    assert extras[0]["learned_together"].startswith("median around step ")
    corpus = build_corpus(tokenizer)
    tables = token_bytes_table(tokenizer)
    ranks = range(all_samples(corpus).cluster.max() + 1)
    shown = {r: extras[r % 3] for r in ranks}
    assert report_data(all_samples(corpus), corpus, tables, cluster_extras=shown)["data"]["clusters"][0][
        "learnedAtRule"] == extras[0]["learned_at_rule"]
    html = render_report(all_samples(corpus), corpus, tables, cluster_extras=shown)
    assert 'stat("cluster learned at", ' in html and '"Tokens\' learning time: " + c.learnedTogether' in html
    assert '"Cluster learned at: " + c.learnedAtRule' in html and "so the two steps differ" in html


def test_scale_page_is_escaped():
    rng = np.random.default_rng(0)
    sizes = {f"m{i}": n for i, n in enumerate([7e7, 1.6e8, 4.1e8, 1e9, 1.4e9, 2.8e9])}
    x = np.log10(list(sizes.values()))
    y = sigmoid(x[:, None], 1.0, 4.0, rng.uniform(x[1], x[-2], 500), 0.05) + rng.normal(0, .05, (6, 500))
    fits = fit_scale_curves({m: y[i].astype(np.float32) for i, m in enumerate(sizes)}, sizes)
    page = learning_page.render_scale_page(EVIL, "step1", fits.frame(), fits.points, fits.summary)
    assert EVIL not in page and "&lt;script&gt;" in page and "<script" not in page
    assert f"{fits.summary['sharp']:,} sharp" in page and "1,400,000,000" in page
    assert json.dumps(fits.summary["models"])  # JSON-able summary
