"""QDG similarity: cosine similarity of per-token loss gradients (Michaud et al. 2023).

For each selected canonical index g (target token ``ids[pos]`` of document ``doc``) we take the
gradient of that single token's cross-entropy loss w.r.t. the *similarity parameters*
(:mod:`.parameters`), L2-normalize it, and the matrix entry ``C[i, j]`` is the dot product of the
normalized gradients. :func:`similarity_matrix` is the entry point; its methods:

``exact`` (default, :mod:`.exact`)
    Per-sample gradients of the targets, batched by context length, through hooks on the Linear
    layers and the final layer norm (:mod:`.gradients`); norms in float64; Gram products summed
    over column chunks in float64 (:mod:`.gram`); a resident block within a memory budget
    (:mod:`.memory`), computed once when all S fit.
``projected`` (:mod:`.projected`)
    A seeded CountSketch (or sparse JL, :mod:`.sketches`) of every gradient, computed once; memory
    ``S × projection_dim``.
``reference`` (:mod:`.reference`)
    The original ``scripts/similarity_matrix_v1.py`` loop, for tests and benchmarks.

``neighbors = k > 0`` (the sparse road, ``exact`` or ``projected``): the Gram still streams by in
blocks, but a :class:`quanta_core.similarity.knn.KnnSink` keeps only each token's k most similar other
tokens (``knn_indices`` int64 ``[S, k]``, ``knn_cosines`` float32 ``[S, k]``); no ``[S, S]``
array exists. ``projected`` then stores its rows in float16 (scaled) when float32 rows would take
more than a quarter of the memory budget, and multiplies them tile by tile (:mod:`.tiles`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from torch import nn

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.host_memory import check_fits
from quanta_core.similarity.exact import BlockSink, DenseMatrix, exact
from quanta_core.similarity.gradients import PerTokenGradients, Targets
from quanta_core.similarity.gram import PrecisionGuard, sync
from quanta_core.similarity.knn import KnnSink
from quanta_core.similarity.memory import (
    MemoryPlan,
    PeakMemory,
    ReusedHeap,
    budget_for_resident,
    default_memory_budget,
    free_memory_bytes,
    plan_memory,
    result_bytes,
)
from quanta_core.similarity.options import METHODS, SimilarityOptions
from quanta_core.similarity.parameters import final_layer_norm, last_layer_positionwise_modules, similarity_parameters
from quanta_core.similarity.projected import DEFAULT_PROJECTION_DIM, countsketch, projected
from quanta_core.similarity.reference import ORIGINAL_BLOCK_LEN, original_gradient_computations, reference
from quanta_core.similarity.results import MethodRun, Progress, ProgressCallback, SimilarityResult
from quanta_core.similarity.sketches import KINDS as PROJECTIONS
from quanta_core.similarity.sketches import Sketch, check_dim, parse_kind

__all__ = [
    "DEFAULT_PROJECTION_DIM",
    "METHODS",
    "ORIGINAL_BLOCK_LEN",
    "BlockSink",
    "DenseMatrix",
    "MemoryPlan",
    "MethodRun",
    "PROJECTIONS",
    "PerTokenGradients",
    "Progress",
    "ProgressCallback",
    "SimilarityOptions",
    "SimilarityResult",
    "Sketch",
    "budget_for_resident",
    "countsketch",
    "default_memory_budget",
    "final_layer_norm",
    "free_memory_bytes",
    "last_layer_positionwise_modules",
    "original_gradient_computations",
    "plan_memory",
    "similarity_matrix",
    "similarity_parameters",
]


def _checked(model, indices, exclude_final_layer_norm: bool):
    """``(indices as int64, similarity parameters)``, or a ValueError saying what is wrong."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(f"indices must be a non-empty 1-D array, got shape {indices.shape}")
    params = similarity_parameters(model, exclude_final_layer_norm=exclude_final_layer_norm)
    if not params:
        raise ValueError("the model has no parameters in the similarity set")
    return indices, params


def _projected_rows(num_tokens: int, dim: int, budget: int) -> str:
    """float32 projected rows when they take at most a quarter of the budget, else float16 (scaled)."""
    return "float32" if num_tokens * dim * 4 <= budget // 4 else "float16"


def _check_memory(method: str, s: int, neighbors: int, projection_dim: int, budget: int, row_dtype: str) -> str:
    """The projected row dtype (``auto`` resolved); ``MemoryError`` with the numbers when the result
    cannot fit: the kNN road's parts the memory ``budget``; the dense matrix the host's available
    memory (``exact``'s budget counts its gradient store alone, as before)."""
    if row_dtype not in ("auto", "float32", "float16"):
        raise ValueError(f"projected_dtype must be auto, float32 or float16, got {row_dtype!r}")
    dim = projection_dim if method == "projected" else None
    if row_dtype == "auto":
        row_dtype = _projected_rows(s, projection_dim, budget) if neighbors else "float32"
    parts = result_bytes(s, neighbors, dim, row_dtype)
    if neighbors:
        check_fits(parts, budget, f"{method} similarity of {s:,} tokens (k = {neighbors} neighbours)",
                   "lower similarity_settings.neighbors or projection_dim, or raise memory_budget_gib")
    else:
        check_fits(parts, free_memory_bytes(torch.device("cpu")), f"{method} similarity of {s:,} tokens (dense)",
                   "set similarity_settings.neighbors (the sparse road: k nearest tokens per token)",
                   limit_name="the available memory")
    return row_dtype


def _run_method(model, corpus, indices, params, o: SimilarityOptions, progress, cuda: bool) -> MethodRun:
    device = params[0][1].device
    targets = Targets.of(corpus, indices)  # also checks the indices (IndexError)
    s = len(indices)
    max_batch, batch_tokens = o.max_batch or (32 if cuda else 8), o.batch_tokens or (16384 if cuda else 4096)
    if o.method == "reference":
        if o.neighbors or o.absolute_gradients:
            raise ValueError("neighbors > 0 and absolute_gradients need method 'exact' or 'projected', not 'reference'")
        return reference(model, corpus, indices, params, block_len=o.block_len, progress=progress)
    if int(o.neighbors) != o.neighbors or not 0 <= o.neighbors < s:
        raise ValueError(f"neighbors must be 0 (dense matrix) or an integer in 1…{s - 1} for {s:,} tokens, "
                         f"got {o.neighbors!r}")
    projection_dim = o.projection_dim
    if o.method == "projected":
        projection_dim = check_dim(projection_dim, parse_kind(o.projection))
    budget = o.memory_budget_bytes if o.memory_budget_bytes is not None else default_memory_budget(device)
    row_dtype = _check_memory(o.method, s, o.neighbors, projection_dim, budget, o.projected_dtype)
    sink = KnnSink(s, o.neighbors) if o.neighbors else None
    if o.method == "exact":
        probe = time.perf_counter()
        run = exact(model, corpus, targets, params, budget=budget, resident_dtype=o.resident_dtype,
                    max_batch=max_batch, batch_tokens=batch_tokens, progress=progress, gram_mode=o.gram_mode,
                    sink=sink, absolute=o.absolute_gradients)
        run.extra["probe_seconds"] = round(time.perf_counter() - probe - run.gradient_seconds - run.gram_seconds, 4)
        return run
    run = projected(model, corpus, targets, params, dim=projection_dim, seed=o.seed, max_batch=max_batch,
                    batch_tokens=batch_tokens, progress=progress, sink=sink, row_dtype=row_dtype,
                    gram_mode=o.gram_mode, projection=o.projection, absolute=o.absolute_gradients)
    run.extra["projection"] = o.projection
    return run


def similarity_matrix(
    model: nn.Module,
    corpus: CanonicalCorpus,
    indices: np.ndarray,
    options: SimilarityOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    **fields,
) -> SimilarityResult:
    """QDG cosine-similarity matrix of the per-token gradients of ``indices`` (canonical, int64 ``[S]``).

    ``model``: a causal LM (GPT-NeoX) on its device, any dtype (float32 for exactness).
    ``options``: how (:class:`SimilarityOptions`: method, memory budget, sketch, neighbors …);
    keyword ``fields`` replace single fields of it, e.g. ``similarity_matrix(m, c, idx,
    method="projected")``. ``progress``: called with a :class:`Progress` after each batch.
    With ``neighbors`` k > 0 the result holds ``knn_indices``, ``knn_cosines`` (``matrix`` is
    None). ``MemoryError`` before any gradient when the result (dense matrix or kNN, projected
    rows) cannot fit the memory budget.
    """
    o = dataclasses.replace(options or SimilarityOptions(), **fields)
    indices, params = _checked(model, indices, o.exclude_final_layer_norm)
    device = params[0][1].device
    was_training = model.training
    model.eval()
    peak = PeakMemory(device)
    started = time.perf_counter()
    try:
        with PrecisionGuard(), ReusedHeap(device.type == "cpu"):
            run = _run_method(model, corpus, indices, params, o, progress, device.type == "cuda")
        sync(device)
    finally:
        model.train(was_training)
    knn = run.matrix if o.neighbors else None
    return SimilarityResult(
        matrix=None if o.neighbors else run.matrix.astype(np.float32),
        knn_indices=None if knn is None else knn[0],
        knn_cosines=None if knn is None else knn[1],
        indices=indices,
        method=o.method,
        seconds=time.perf_counter() - started,
        peak_memory_bytes=peak.read(),
        num_parameters=sum(p.numel() for _, p in params),
        parameter_names=[n for n, _ in params],
        exclude_final_layer_norm=o.exclude_final_layer_norm,
        device=str(device),
        **run.fields(),
    )
