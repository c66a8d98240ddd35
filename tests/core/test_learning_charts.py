"""The learning-time charts are well-formed SVG made of numbers and fixed labels."""

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from quanta_core.learning.clusters import learned_at_once
from quanta_core.learning.spectrum import learning_time_spectrum
from quanta_core.learning.times import fit_learning_times
from quanta_core.report.charts import learned_together_svg, scale_histogram_svg, spectrum_svg
from quanta_core.steps import PYTHIA_STEPS

from support.learning_synthetic import PYTHIA_X, trajectories

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def fits():
    _, y = trajectories(PYTHIA_X, 3000, seed=20, noise=0.1)
    return fit_learning_times({s: y[t].astype(np.float32) for t, s in enumerate(PYTHIA_STEPS)})


def _parse(svg):
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img" and root.get("aria-label")
    return root


def test_spectrum_chart(fits):
    spectrum = learning_time_spectrum(fits)
    root = _parse(spectrum_svg(spectrum.bins, spectrum.summary))
    bars = root.findall(f"{SVG}rect")
    assert len(bars) == int((spectrum.bins["tokens"] > 0).sum())
    assert sorted(int(b.find(f"{SVG}title").text.split()[0]) for b in bars) == sorted(
        int(n) for n in spectrum.bins["tokens"] if n > 0)
    assert len(root.findall(f"{SVG}polyline")) == 3  # measured, reconstructed, all fits
    assert f"{spectrum.summary['reconstruction_error']:.3f}" in root.get("aria-label")
    with pytest.raises(ValueError, match="no bins"):
        spectrum_svg(spectrum.bins.iloc[:0], spectrum.summary)


def test_learned_together_chart(fits):
    rng = np.random.default_rng(0)
    indices = rng.choice(3000, 600, replace=False)
    table, summary = learned_at_once(indices, rng.integers(0, 20, 600), fits.columns, rng.random(600),
                                     permutations=99)
    root = _parse(learned_together_svg(table, summary))
    assert len(root.findall(f"{SVG}circle")) == int(table["tested"].sum())
    assert f"{summary['tighter']} of {summary['tested']} clusters" in root.get("aria-label")
    empty = table.assign(tested=False)
    assert not _parse(learned_together_svg(empty, {**summary, "tested": 0})).findall(f"{SVG}circle")


def test_scale_chart():
    rng = np.random.default_rng(1)
    sizes = np.log10([7e7, 1.6e8, 4.1e8, 1e9, 1.4e9, 2.8e9, 6.9e9, 1.2e10])
    mid = rng.uniform(sizes[0], sizes[-1], 500)
    sharp = rng.random(500) < 0.3
    well = rng.random(500) < 0.9
    root = _parse(scale_histogram_svg(mid, sharp, well, sizes))
    counts = [int(r.find(f"{SVG}title").text.split()[0]) for r in root.findall(f"{SVG}rect")]
    assert sum(counts) == int(well.sum())
    assert f"{int((sharp & well).sum())} sharp" in root.get("aria-label")
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "70M" in texts and "12B" in texts  # sizes labelled in parameters


def test_labels_are_escaped():
    bins = pd.DataFrame({"x_lo": [0.0], "x_hi": [1.0], "tokens": [3], "measured": [1.0], "reconstructed": [1.0],
                         "fitted_all": [1.0]})
    svg = spectrum_svg(bins, {"reconstruction_error": 0.0, "well_fit": 3})
    _parse(svg)
    assert "<script" not in svg
