"""Are quanta learned at once? The spread of each cluster's learning times against random groups.

For the clusters of a reference step (canonical ``indices`` ``[S]``, cluster ``labels`` ``[S]``), only
*well-fit* tokens count (``flags == 0`` in the token fits); a cluster is **tested** when it has at least
``min_tokens`` of them. Its **spread** is the interquartile range (IQR, ``numpy.quantile``'s linear
interpolation) of its tokens' learning times ``midpoint_x`` (decades of step + 1).

**Test** — a one-sided Monte Carlo permutation test, stratified by loss: the well-fit clustered
tokens are put in ``loss_bins`` bins of their loss at the reference step (quantile bins over those
tokens); each permutation shuffles the tokens' cluster labels *within* every bin, so every cluster
keeps its size and its loss-bin composition (random groups of the same size and loss distribution,
drawn from the clustered tokens) and all clusters are permuted together. With ``permutations`` = B
and k the number of permutations whose spread for the cluster is ≤ the observed one,
``p = (1 + k) / (1 + B)`` (never 0; ties count against tightness). ``q_value``: Benjamini–Hochberg
adjusted p-values over the tested clusters (``scipy.stats.false_discovery_control``); a cluster is
**tighter than random** when q < ``alpha`` (false discovery rate ``alpha`` across clusters).

Summary across clusters: the fraction of tested clusters tighter than random (BH at ``alpha``), the
fraction with raw p < alpha (≈ alpha if no cluster is special), the median ratio of observed spread to
the permutation median, and a global p-value for the mean over tested clusters of log(observed /
permutation median) against the same permutations (one-sided, p = (1 + k) / (1 + B)).
Deterministic for a given ``seed``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from quanta_core.learning.times import x_to_step
from quanta_core.presets import ALPHA, LOSS_BINS, MIN_CLUSTER_TOKENS, PERMUTATIONS

TEST_NAME = ("one-sided Monte Carlo permutation test of the IQR of log10(learning step + 1); cluster labels "
             "permuted within reference-loss quantile bins; Benjamini-Hochberg FDR across clusters")
_BATCH = 64  # permutations at a time


def _inputs(indices, labels, fits, reference_losses):
    indices, labels = np.asarray(indices), np.asarray(labels)
    losses = np.asarray(reference_losses, dtype=np.float64)
    if indices.ndim != 1 or labels.shape != indices.shape or losses.shape != indices.shape:
        raise ValueError(f"indices, labels, reference_losses must be 1-D of one length, got "
                         f"{indices.shape}, {labels.shape}, {losses.shape}")
    if not (np.issubdtype(indices.dtype, np.integer) and np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"indices and labels must be integers, got {indices.dtype} and {labels.dtype}")
    mid, flags = np.asarray(fits["midpoint_x"]), np.asarray(fits["flags"])
    if len(indices) and (indices.min() < 0 or indices.max() >= len(mid)):
        raise IndexError(f"canonical indices must lie in [0, {len(mid)}), got {indices.min()}…{indices.max()}")
    if not np.isfinite(losses).all():
        raise ValueError("reference_losses holds non-finite values")
    keep = flags[indices] == 0
    return labels[keep].astype(np.int64), mid[indices[keep]].astype(np.float64), losses[keep]


def _loss_bins(losses: np.ndarray, count: int) -> np.ndarray:
    """Bin of each loss among ``count`` quantile bins (ties share a bin), int64 ``[n]``."""
    edges = np.unique(np.quantile(losses, np.linspace(0, 1, count + 1)[1:-1])) if count > 1 else np.array([])
    return np.searchsorted(edges, losses, side="right")


def _segment_iqr(values: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """IQR of each contiguous segment of every row: ``values`` ``[B, n]`` sorted within segments → ``[B, K]``."""
    out = []
    for q in (0.25, 0.75):
        pos = starts + q * (sizes - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, starts + sizes - 1)
        frac = pos - lo
        out.append(values[:, lo] + frac * (values[:, hi] - values[:, lo]))
    return out[1] - out[0]


def _sorted_within(values: np.ndarray, segment_of: np.ndarray) -> np.ndarray:
    """Sort every row of ``values`` ``[B, n]`` within segments (``segment_of`` ``[n]`` nondecreasing)."""
    span = float(values.max() - values.min()) + 1.0
    order = np.argsort(values + segment_of * span, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1)


def _permuted_spreads(values, bins, starts, sizes, segment_of, permutations, rng) -> np.ndarray:
    """Spreads ``[B, K]`` of the segments under ``permutations`` within-bin shuffles of ``values``."""
    members = [np.flatnonzero(bins == b) for b in np.unique(bins)]
    spreads = []
    for first in range(0, permutations, _BATCH):
        batch = min(_BATCH, permutations - first)
        shuffled = np.empty((batch, len(values)))
        for m in members:
            picks = np.argsort(rng.random((batch, len(m))), axis=1)
            shuffled[:, m] = values[m][picks]
        spreads.append(_segment_iqr(_sorted_within(shuffled, segment_of), starts, sizes))
    return np.concatenate(spreads)


def learned_at_once(
    indices: np.ndarray,
    labels: np.ndarray,
    fits,
    reference_losses: np.ndarray,
    *,
    loss_bins: int = LOSS_BINS,
    permutations: int = PERMUTATIONS,
    min_tokens: int = MIN_CLUSTER_TOKENS,
    alpha: float = ALPHA,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Per-cluster test (module docstring). ``fits``: anything with ``fits["midpoint_x"]`` and
    ``fits["flags"]`` ``[G]`` (a :class:`~quanta_core.learning.times.TokenFits`, or its stored
    ``fits.parquet`` as a DataFrame); ``reference_losses``: float ``[S]`` nats, each clustered token's loss at the
    reference step.

    Returns ``(clusters, summary)``: one row per cluster (by label) — ``cluster``, ``n`` (tokens),
    ``n_fit`` (well fit), ``tested``, ``median_x``, ``median_step``, ``iqr`` (decades),
    ``null_iqr_median``, ``null_iqr_q05`` (of the permutations), ``ratio`` (iqr / null median),
    ``p_value``, ``q_value``, ``tighter`` (q < alpha); untested rows hold NaN and ``tighter`` False.
    """
    if permutations < 1 or min_tokens < 2 or loss_bins < 1 or not 0 < alpha < 1:
        raise ValueError(f"bad settings: permutations={permutations}, min_tokens={min_tokens}, "
                         f"loss_bins={loss_bins}, alpha={alpha}")
    all_labels = np.asarray(labels)
    lab, mid, losses = _inputs(indices, labels, fits, reference_losses)
    clusters = np.unique(all_labels)
    counts = pd.Series(all_labels).value_counts().reindex(clusters).to_numpy()
    n_fit = pd.Series(lab).value_counts().reindex(clusters, fill_value=0).to_numpy()
    tested = clusters[n_fit >= min_tokens]
    table = pd.DataFrame({"cluster": clusters.astype(np.int64), "n": counts.astype(np.int64),
                          "n_fit": n_fit.astype(np.int64), "tested": n_fit >= min_tokens})
    nan = np.full(len(clusters), np.nan)
    for column in ("median_x", "median_step", "iqr", "null_iqr_median", "null_iqr_q05", "ratio", "p_value", "q_value"):
        table[column] = nan
    table["tighter"] = False
    summary = {"test": TEST_NAME, "clusters": len(clusters), "tested": len(tested), "permutations": permutations,
               "loss_bins": loss_bins, "min_tokens": min_tokens, "alpha": alpha, "seed": seed}
    if len(tested) == 0:
        nan = float("nan")
        return table, {**summary, "tighter": 0, "fraction_tighter": nan, "fraction_p_below_alpha": nan,
                       "median_ratio": nan, "global_p_value": nan}

    order = np.lexsort((mid, lab))  # by cluster, then learning time
    lab, mid, losses = lab[order], mid[order], losses[order]
    segments, starts, sizes = np.unique(lab, return_index=True, return_counts=True)
    observed = _segment_iqr(mid[None, :], starts, sizes)[0]
    rng = np.random.default_rng(seed)
    null = _permuted_spreads(mid, _loss_bins(losses, loss_bins), starts, sizes, np.searchsorted(segments, lab),
                             permutations, rng)
    return _finish(table, summary, segments, tested, observed, null, mid, starts, sizes, alpha)


def _finish(table, summary, segments, tested, observed, null, mid, starts, sizes, alpha):
    """Fill the per-cluster rows and the summary from observed ``[K]`` and permuted ``[B, K]`` spreads."""
    pick = np.isin(segments, tested)
    obs, perm = observed[pick], null[:, pick]
    p = (1 + (perm <= obs).sum(axis=0)) / (1 + len(perm))
    q = false_discovery_control(p, method="bh")
    null_median = np.median(perm, axis=0)
    ratio = np.divide(obs, null_median, out=np.full(len(obs), np.nan), where=null_median > 0)
    medians = np.array([np.median(mid[s:s + n]) for s, n in zip(starts[pick], sizes[pick])])
    rows = table["cluster"].isin(tested).to_numpy()
    table.loc[rows, "median_x"] = medians
    table.loc[rows, "median_step"] = x_to_step(medians)
    table.loc[rows, "iqr"] = obs
    table.loc[rows, "null_iqr_median"] = null_median
    table.loc[rows, "null_iqr_q05"] = np.quantile(perm, 0.05, axis=0)
    table.loc[rows, "ratio"] = ratio
    table.loc[rows, "p_value"] = p
    table.loc[rows, "q_value"] = q
    table.loc[rows, "tighter"] = q < alpha
    log_ratio = lambda spreads: np.log(np.maximum(spreads, 1e-12) / np.maximum(null_median, 1e-12)).mean(axis=-1)  # noqa: E731
    global_p = (1 + (log_ratio(perm) <= log_ratio(obs)).sum()) / (1 + len(perm))
    summary.update(
        tighter=int((q < alpha).sum()),
        fraction_tighter=float((q < alpha).mean()),
        fraction_p_below_alpha=float((p < alpha).mean()),
        median_ratio=float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else float("nan"),
        global_p_value=float(global_p),
    )
    return table, summary


def cluster_panel_extras(clusters: pd.DataFrame) -> dict[int, dict]:
    """Cluster → what its report panel shows (numbers only): ``learning_step`` (median learning step of
    its well-fit tokens), ``iqr_decades``, ``random_iqr_decades``, ``p_value``, ``q_value`` (None when
    untested), ``tighter`` (bool) and ``text``, one sentence, e.g. "median around step 1,234 (IQR 0.21
    decades vs 0.55 for random groups of the same size and loss; permutation p = 0.002, BH q = 0.03)": the
    tokens' learning time (median of their sigmoid midpoints), not the cluster's learned-at step."""
    out = {}
    for row in clusters.itertuples(index=False):
        if not row.tested:
            out[int(row.cluster)] = {"learning_step": None, "iqr_decades": None, "random_iqr_decades": None,
                                     "p_value": None, "q_value": None, "tighter": False,
                                     "text": f"too few well-fit tokens to test ({int(row.n_fit)} of {int(row.n)})"}
            continue
        out[int(row.cluster)] = {
            "learning_step": float(row.median_step), "iqr_decades": float(row.iqr),
            "random_iqr_decades": float(row.null_iqr_median), "p_value": float(row.p_value),
            "q_value": float(row.q_value), "tighter": bool(row.tighter),
            "text": (f"median around step {row.median_step:,.0f} (IQR {row.iqr:.2f} decades vs "
                     f"{row.null_iqr_median:.2f} for random groups of the same size and loss; permutation "
                     f"p = {row.p_value:.3g}, BH q = {row.q_value:.3g})"),
        }
    return out
