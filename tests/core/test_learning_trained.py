"""Learning times on real (tiny) models trained here: a demo suite over 8 checkpoints, and a family
of six sizes at one step (the scale fit). Checked against independent computations: the tables'
own means and scipy.optimize.curve_fit on sampled tokens."""

import json
import warnings

import numpy as np
import pytest
from scipy.optimize import OptimizeWarning, curve_fit

from quanta_core.learning import fit as lf
from quanta_core.learning.clusters import cluster_panel_extras, learned_at_once
from quanta_core.learning.scale import TRANSITION, fit_scale_curves, gptneox_parameter_count, sharp_threshold
from quanta_core.learning.spectrum import learning_time_spectrum
from quanta_core.learning.times import fit_learning_times, step_positions

from support.helpers import tiny_minipile_corpus, train_tiny_suite

STEPS = ("step0", "step1", "step2", "step4", "step8", "step16", "step32", "step64")
SIZES = (8, 12, 16, 24, 32, 48)  # hidden sizes of the family


def _train(corpus, hub, hidden, steps):
    trained = train_tiny_suite(corpus, hub, hidden, steps, evaluate=steps[1:] if len(steps) == 2 else steps)
    for _, count, snapshot in trained.values():
        config = json.loads((snapshot / "config.json").read_text())
        assert gptneox_parameter_count(config) == count  # the formula, against torch
    return {step: (losses, count) for step, (losses, count, _) in trained.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    corpus = tiny_minipile_corpus(root)
    suite = {step: losses for step, (losses, _) in _train(corpus, root / "suite", 32, STEPS).items()}
    family = {}
    for hidden in SIZES:
        (losses, params), = _train(corpus, root / f"h{hidden}", hidden, ("step0", "step48")).values()
        family[f"h{hidden}"] = (losses, params)
    return corpus, suite, family


def _best_curve_fit(x, y, bounds, starts):
    lo = [-np.inf, -np.inf, bounds.x_min, bounds.min_width]
    hi = [np.inf, np.inf, bounds.x_max, bounds.max_width]
    best = np.inf
    for p0 in starts:
        p0 = np.clip(p0, np.nextafter(lo, 1), np.nextafter(hi, -1))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                p, _ = curve_fit(lambda x, a, b, m, w: a + b / (1 + np.exp(np.clip((x - m) / w, -500, 500))),
                                 x, y, p0=p0, bounds=(lo, hi), maxfev=20_000)
        except RuntimeError:
            continue
        best = min(best, float(((y - p[0] - p[1] / (1 + np.exp(np.clip((x - p[2]) / p[3], -500, 500)))) ** 2).sum()))
    return best


def _check_against_curve_fit(fits, tables, x, settings, sample=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.stack([np.asarray(t, dtype=np.float64) for t in tables])
    bounds = lf.bounds_for(x, settings)
    for g in rng.choice(y.shape[1], sample, replace=False):
        yy = y[:, g]
        starts = [[yy[-1], yy[0] - yy[-1], m, w] for m in np.linspace(x[0], x[-1], 5) for w in (0.05, 0.3)]
        ours = float(fits.columns["rms"][g]) ** 2 * len(x)
        assert ours <= _best_curve_fit(x, yy, bounds, starts) * (1 + 1e-4) + 1e-8, g


def test_training_learning_times_of_a_trained_suite(trained):
    corpus, suite, _ = trained
    fits = fit_learning_times(suite, chunk_tokens=1500)
    g = corpus.num_predictable
    assert all(len(v) == g for v in fits.columns.values())
    assert np.allclose(fits.points["mean_loss"], [suite[s].astype(np.float64).mean() for s in STEPS], rtol=1e-9)
    assert fits.summary["well_fit_fraction"] > 0.5  # the tiny model learns most tokens' unigram statistics
    well = fits.well_fit
    assert np.median(fits.columns["loss_initial"][well]) == pytest.approx(np.log(50_304), abs=0.3)
    mids = fits.columns["midpoint_step"][well]
    assert 1 <= np.median(mids) <= 64
    _check_against_curve_fit(fits, [suite[s] for s in STEPS], step_positions(STEPS), lf.FitSettings())

    spectrum = learning_time_spectrum(fits)
    assert spectrum.bins["tokens"].sum() == well.sum()
    assert 0 <= spectrum.summary["reconstruction_error"] < 1
    assert 0.5 < spectrum.summary["explained_fraction"] < 1.5

    # clusters = tokens grouped by their target token id (a smoke run on real fits)
    final = suite[STEPS[-1]]
    indices = np.flatnonzero(final < np.quantile(final, 0.3))
    targets = corpus.target_ids()[indices].astype(np.int64)
    common = np.unique(targets, return_counts=True)
    keep = np.isin(targets, common[0][common[1] >= 8])
    table, summary = learned_at_once(indices[keep], targets[keep], fits, final[indices[keep]],
                                     permutations=199)
    assert summary["tested"] >= 3 and ((table["p_value"] > 0) & (table["p_value"] <= 1))[table["tested"]].all()
    extras = cluster_panel_extras(table)
    assert set(extras) == set(table["cluster"])
    tested = table[table["tested"]].iloc[0]
    panel = extras[int(tested.cluster)]
    assert panel["p_value"] == tested.p_value and "permutation p" in panel["text"]


def test_scale_fit_of_a_trained_family(trained):
    _, _, family = trained
    tables = {name: losses for name, (losses, _) in family.items()}
    params = {name: n for name, (_, n) in family.items()}
    fits = fit_scale_curves(tables, params)
    points = fits.points
    assert list(points["num_parameters"]) == sorted(params.values())
    assert points["mean_loss"].iloc[-1] < points["mean_loss"].iloc[0] - 0.5  # bigger is better
    cols = fits.columns
    x = np.log10(sorted(params.values()))
    assert np.allclose(cols["midpoint_parameters"], 10 ** cols["midpoint_x"].astype(np.float64), rtol=1e-6)
    expected_sharp = (cols["flags"] == 0) & (TRANSITION * cols["width"] <= np.median(np.diff(x)))
    assert (cols["sharp"] == expected_sharp).all() and sharp_threshold(x) == pytest.approx(np.median(np.diff(x)))
    assert fits.summary["sharp"] + fits.summary["gradual"] == fits.summary["well_fit"] > 0
    order = sorted(tables, key=params.get)
    _check_against_curve_fit(fits, [tables[m] for m in order], x, lf.FitSettings())

    three = {m: tables[m] for m in order[::2]}
    few = fit_scale_curves(three, params)
    assert (few.columns["flags"] & lf.UNDERDETERMINED).all() and not few.columns["sharp"].any()
    with pytest.raises(ValueError, match="no parameter count"):
        fit_scale_curves(tables, {m: params[m] for m in order[1:]})
