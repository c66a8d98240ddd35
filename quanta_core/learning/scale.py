"""Token learning across model scale: each token's loss against parameter count, at one step.

For a family of models (e.g. ``pythia-70m … pythia-12b`` at ``step143000``) whose loss tables cover
the same tokens, every token's loss is fitted against ``x = log10(N)`` (N = parameter count) with
the sigmoid of :mod:`quanta_core.learning.fit`: ``midpoint_x`` is where it is learned, reported as
``midpoint_parameters = 10**midpoint_x`` ("learned at size N"); ``loss_initial`` / ``loss_final`` are
the losses of (much) smaller / larger models.

**Sharp vs gradual** (the paper's per-token scaling curves): a well-fit token is *sharp* when its
10 %–90 % transition, ``2 ln 9 · width`` decades of N, is no wider than the median gap in log10 N
between consecutive sizes of the family (it happens between two neighbouring sizes), else *gradual*.
``sharp`` is False for tokens that are not well fit. With fewer than ``FitSettings.min_points`` sizes
(default 6; the four parameters need sizes to spare), every token is flagged ``UNDERDETERMINED``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from quanta_core.learning.fit import FitSettings
from quanta_core.learning.times import CHUNK_TOKENS, Table, TokenFits, fit_tables

TRANSITION = 2 * math.log(9)  # 10 %–90 % span of a logistic, in units of its width


def gptneox_parameter_count(config: Mapping, embeddings: bool = True) -> int:
    """Parameters of a ``GPTNeoXForCausalLM`` from its ``config.json`` (no weights loaded): input and
    output embeddings (untied, ``vocab_size × hidden_size`` each; left out with ``embeddings=False``),
    per layer two LayerNorms, fused QKV and output projections with biases and the MLP with biases,
    and the final LayerNorm. pythia-70m: 70,426,624 (18,915,328 without embeddings)."""
    v, h, layers = int(config["vocab_size"]), int(config["hidden_size"]), int(config["num_hidden_layers"])
    inner = int(config.get("intermediate_size") or 4 * h)
    embedding = v * h * (1 if config.get("tie_word_embeddings", False) else 2)
    per_layer = 2 * 2 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * inner + inner) + (inner * h + h)
    return (embedding if embeddings else 0) + layers * per_layer + 2 * h


def sharp_threshold(log_sizes: np.ndarray) -> float:
    """The widest 10 %–90 % transition (decades of N) still called sharp: the median gap of ``log_sizes``."""
    return float(np.median(np.diff(np.sort(np.asarray(log_sizes, dtype=np.float64)))))


def fit_scale_curves(
    loss_tables: Mapping[str, Table],
    num_parameters: Mapping[str, int | float],
    *,
    settings: FitSettings = FitSettings(),
    chunk_tokens: int = CHUNK_TOKENS,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> TokenFits:
    """Fit every token's loss across the models of ``loss_tables`` (model name → ``.npy`` path or
    float array ``[G]``, nats, same tokens for all) at ``x = log10(num_parameters[model])``.

    Returns :class:`~quanta_core.learning.times.TokenFits` with the columns of
    :func:`~quanta_core.learning.times.fit_tables` plus ``midpoint_parameters`` (float32) and
    ``sharp`` (bool); points gain ``num_parameters``; the summary ``axis``, ``models``,
    ``sharp_max_transition_decades``, ``sharp`` and ``gradual`` counts.
    """
    missing = sorted(set(loss_tables) - set(num_parameters))
    if missing:
        raise ValueError(f"no parameter count for {missing}")
    sizes = {m: float(num_parameters[m]) for m in loss_tables}
    bad = {m: n for m, n in sizes.items() if not (math.isfinite(n) and n > 0)}
    if bad:
        raise ValueError(f"parameter counts must be positive, got {bad}")
    models = sorted(loss_tables, key=lambda m: sizes[m])
    x = np.log10([sizes[m] for m in models])
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"two models of the same size: { {m: sizes[m] for m in models} }")
    fits = fit_tables([(m, loss_tables[m]) for m in models], x, settings=settings, chunk_tokens=chunk_tokens,
                      workers=workers, progress=progress)
    cols = fits.columns
    cols["midpoint_parameters"] = np.power(10.0, cols["midpoint_x"].astype(np.float64)).astype(np.float32)
    limit = sharp_threshold(x)
    cols["sharp"] = (cols["flags"] == 0) & (TRANSITION * cols["width"].astype(np.float64) <= limit)
    fits.points.insert(1, "num_parameters", np.array([sizes[m] for m in models], dtype=np.int64))
    well = int((cols["flags"] == 0).sum())
    fits.summary.update(axis="log10(parameters)", models=models, sharp_max_transition_decades=limit,
                        sharp=int(cols["sharp"].sum()), gradual=well - int(cols["sharp"].sum()))
    return fits
