"""fit_learning_times over memory-mapped step tables: chunking, bounded memory, columns, errors."""

import tracemalloc

import numpy as np
import pytest

from quanta_core.learning import fit as lf
from quanta_core.learning.times import (
    FIT_COLUMNS,
    WORKING_ARRAYS,
    TokenFits,
    fit_learning_times,
    read_token_fits,
)
from quanta_core.steps import PYTHIA_STEPS

from support.learning_synthetic import PYTHIA_X, trajectories

STEPS = PYTHIA_STEPS[::4]  # 39 of Pythia's steps
X = PYTHIA_X[::4]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """20,000 tokens × 39 steps written as float32 .npy files (one per step), and the truth."""
    root = tmp_path_factory.mktemp("tables")
    truth, y = trajectories(X, 20_000, seed=4, noise=0.1)
    paths = {}
    for t, step in enumerate(STEPS):
        paths[step] = root / f"{step}.npy"
        np.save(paths[step], y[t].astype(np.float32), allow_pickle=False)
    return paths, truth, y.astype(np.float32).astype(np.float64)


def test_chunked_memmapped_fit_equals_the_whole_fit(tables):
    paths, truth, y = tables
    done = []
    shuffled = dict(reversed(list(paths.items())))  # any order in, step order out
    fits = fit_learning_times(shuffled, chunk_tokens=3000, progress=done.append)
    assert done == sorted(done) and done[-1] == 20_000 and len(done) == 7
    whole = lf.fit_sigmoids(y, X)
    cols = fits.columns
    assert set(FIT_COLUMNS) | {"midpoint_step"} == set(cols)
    assert all(len(v) == 20_000 for v in cols.values())
    assert cols["flags"].dtype == np.uint8 and all(cols[c].dtype == np.float32 for c in cols if c != "flags")
    sse = cols["rms"].astype(np.float64) ** 2 * len(X)
    assert np.allclose(sse, whole["sse"], rtol=1e-5, atol=1e-9)  # the same optimum, token by token
    # where the transition is sharper than the sampling, the midpoint is anywhere in the gap (documented)
    gap_of = lambda m: np.clip(np.searchsorted(X, m), 1, len(X) - 1)  # noqa: E731
    sharp = whole["width"] < 0.5 * (X[gap_of(whole["midpoint"])] - X[gap_of(whole["midpoint"]) - 1])
    assert np.allclose(cols["midpoint_x"][~sharp], whole["midpoint"][~sharp], atol=1e-5)
    assert (gap_of(cols["midpoint_x"][sharp]) == gap_of(whole["midpoint"][sharp])).all()
    assert np.allclose(cols["loss_final"][~sharp], whole["final"][~sharp], atol=1e-4)
    assert np.allclose(cols["loss_initial"][~sharp], (whole["final"] + whole["drop"])[~sharp], atol=1e-4)
    assert (cols["flags"] == whole["flags"]).mean() > 0.999
    assert np.allclose(cols["midpoint_step"], 10.0 ** cols["midpoint_x"].astype(np.float64) - 1, rtol=1e-6)
    assert np.median(np.abs(cols["midpoint_x"] - truth["mid"])) < 0.05  # decades, 39 checkpoints, 0.1-nat noise
    # points: the measured mean loss and the mean of the fitted curves, by step
    points = fits.points
    assert list(points["name"]) == STEPS and list(points["step_number"]) == [int(s[4:]) for s in STEPS]
    assert np.allclose(points["mean_loss"], y.mean(axis=1), rtol=1e-12)
    assert np.allclose(points["mean_fitted"], lf.sigmoid_curves(X, whole).mean(axis=1), rtol=1e-6)
    summary = fits.summary
    assert summary["tokens"] == 20_000 and summary["positions"] == len(STEPS) and summary["steps"] == STEPS
    assert summary["well_fit"] == int((cols["flags"] == 0).sum()) and summary["tokens_per_second"] > 0


def test_two_workers_give_the_same_fits(tables):
    paths, _, _ = tables
    one = fit_learning_times(paths, chunk_tokens=4000)
    two = fit_learning_times(paths, chunk_tokens=4000, workers=2)
    for c in FIT_COLUMNS:
        assert np.array_equal(one.columns[c], two.columns[c])


def test_memory_is_bounded_by_the_chunk(tables):
    """The tables hold 20,000 × 39 losses (6.2 MB as float64); with 1,000-token chunks the traced peak
    stays within the stated bound (12 × chunk × T × 8 bytes) plus the outputs (29 bytes per token)."""
    paths, _, _ = tables
    chunk = 1000
    tracemalloc.start()
    try:
        fit_learning_times(paths, chunk_tokens=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    bound = WORKING_ARRAYS * chunk * len(STEPS) * 8 + 29 * 20_000 + (1 << 20)
    assert peak < bound, (peak, bound)
    assert peak < 20_000 * len(STEPS) * 8 / 1.5  # well below one float64 copy of the tables


def test_round_trip_through_parquet(tables, tmp_path):
    paths, _, _ = tables
    fits = fit_learning_times({s: paths[s] for s in STEPS[:12]})
    stored = fits.tables()
    stored["fits"].to_parquet(tmp_path / "fits.parquet")
    stored["points"].to_parquet(tmp_path / "points.parquet")
    import json

    (tmp_path / "summary.json").write_text(json.dumps(stored["summary"]))
    back = read_token_fits(tmp_path)
    assert isinstance(back, TokenFits)
    for c, v in fits.columns.items():
        assert np.array_equal(back.columns[c], v) and back.columns[c].dtype == v.dtype
    assert back.summary == json.loads(json.dumps(fits.summary))
    assert read_token_fits(tmp_path / "absent") is None


def test_bad_tables_get_clear_errors(tables, tmp_path):
    paths, _, y = tables
    some = {s: paths[s] for s in STEPS[:8]}
    with pytest.raises(FileNotFoundError, match="step0"):
        fit_learning_times({**some, "step0": tmp_path / "missing.npy"})
    short = y[3, :100].astype(np.float32)
    with pytest.raises(ValueError, match=f"{STEPS[3]}.*100 entries"):
        fit_learning_times({**some, STEPS[3]: short})
    broken = y[5].astype(np.float32)
    broken[12_345] = np.nan
    with pytest.raises(ValueError, match=f"{STEPS[5]}.*first at 12,345"):
        fit_learning_times({**some, STEPS[5]: broken}, chunk_tokens=5000)
    with pytest.raises(ValueError, match="step name"):
        fit_learning_times({**some, "final": paths[STEPS[0]]})
    with pytest.raises(ValueError, match="1-D float"):
        fit_learning_times({**some, STEPS[2]: np.zeros((3, 3), dtype=np.float32)})
    with pytest.raises(ValueError, match="no loss tables"):
        fit_learning_times({})


def test_an_error_stops_the_run_after_the_chunks_in_flight(tables, monkeypatch):
    import quanta_core.learning.times as lt

    paths, _, y = tables
    broken = y[2].astype(np.float32)
    broken[100] = np.inf  # in the first of 20 chunks
    calls, fit_chunk = [], lt._fit_chunk
    monkeypatch.setattr(lt, "_fit_chunk", lambda *a: calls.append(a[-2]) or fit_chunk(*a))
    done = []
    with pytest.raises(ValueError, match="first at 100"):
        fit_learning_times({**paths, STEPS[2]: broken}, chunk_tokens=1000, workers=2, progress=done.append)
    assert done == [] and len(calls) <= 4  # 2 × workers submitted, none after the error
