"""Stage ``quanta_similarity``: select the low-loss tokens and compute their QDG gradient cosine
matrix; writes the directory ``<cache>/<model>/<step>/quanta_similarity/`` (``indices.npy``
int64 ``[S]``, and ``matrix.npy`` float32 ``[S, S]`` — or, with ``neighbors`` k > 0, the sparse
road's ``knn_indices.npy`` int64 ``[S, k]`` and ``knn_cosines.npy`` float32 ``[S, k]``).

``params``: ``cache_dir``, ``model``, ``step``, ``corpus``, ``losses``, ``filters`` (stored
paths of ``pile_canonical``, ``pile_losses``, ``induction_filters``), ``output``, ``selection``
(a :class:`~quanta_core.corpus.selection.SelectionOptions` as a dict), ``similarity`` (a
:class:`~quanta_core.similarity.SimilarityOptions` as a dict), ``loader``.
"""

from __future__ import annotations

import numpy as np

from quanta_assets.stages import md, path
from quanta_assets.stages.loading import load_model
from quanta_core import store
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.selection import SelectionOptions, select_tokens
from quanta_core.progress import RateLog
from quanta_core.similarity import SimilarityOptions, similarity_matrix


def select(params: dict) -> tuple[np.ndarray, int]:
    """(selected canonical indices int64 [S], number of candidate tokens)."""
    chosen = SelectionOptions(**params["selection"])
    losses = np.asarray(store.read_value(params["losses"]))
    flags = None
    if chosen.filter != "none":
        flags = np.asarray(store.read_value(params["filters"])[chosen.filter])
    indices = select_tokens(losses, flags, threshold_bits=chosen.threshold_bits, skip=chosen.skip,
                            num_tokens=chosen.num_tokens, filter_name=chosen.filter)
    return indices, len(losses)


def _settings_metadata(params: dict) -> dict:
    """``setting_<name>`` for every option that shaped the result (sketch options only when projected)."""
    options = params["similarity"]
    projected = options["method"] == "projected"
    unused = () if projected else ("projection_dim", "seed", "projection")
    return {
        **{f"setting_{k}": v for k, v in params["selection"].items()},
        **{f"setting_{k}": None if k in unused else v for k, v in options.items()
           if k not in ("max_batch", "batch_tokens", "block_len", "projected_dtype")},
    }


def _progress(log):
    """A ``progress`` callback logging gradient computations, then (sparse road) Gram tiles, with rate and ETA."""
    logs = {"gradients": RateLog(log, None, "gradient computations"), "gram": RateLog(log, None, "Gram tiles")}

    def progress(p) -> None:
        rate = logs[p.stage]
        rate.total = p.gradients_total
        rate(p.gradients_done, f"block {p.block + 1}/{p.blocks}, {p.tokens_total:,} tokens")

    return progress


def _outputs(result, indices: np.ndarray) -> tuple[dict, dict]:
    """(arrays to store, their summary metadata)."""
    s = len(indices)
    if result.neighbors:
        cos = result.knn_cosines
        return ({"indices": indices, "knn_indices": result.knn_indices, "knn_cosines": cos},
                {"mean_neighbor_cosine": float(cos.mean()), "mean_kth_neighbor_cosine": float(cos[:, -1].mean())})
    matrix = result.matrix.astype(np.float32)
    return ({"indices": indices, "matrix": matrix},
            {"mean_offdiagonal_cosine": float((matrix.sum() - np.trace(matrix)) / max(s * (s - 1), 1))})


def run(params: dict, log) -> dict:
    indices, candidates = select(params)
    corpus = CanonicalCorpus.load(params["corpus"])
    loaded = load_model(params, log)
    chosen, options = params["selection"], SimilarityOptions.from_dict(params["similarity"])
    log(f"{params['model']} {params['step']}: {len(indices):,} tokens selected of {candidates:,} (threshold "
        f"{chosen['threshold_bits']:g} bits, filter {chosen['filter']}, skip {chosen['skip']}); method "
        f"{options.method} on {loaded.device} ({loaded.dtype})")
    result = similarity_matrix(loaded.model, corpus, indices, options, progress=_progress(log))
    commit = loaded.checkpoint.commit
    loaded.release()
    arrays, summary = _outputs(result, indices.astype(np.int64))
    written = store.write_value(params["output"], arrays)
    log(f"similarity of {len(indices):,} tokens done in {result.seconds:.1f} s, peak memory "
        f"{result.peak_memory_bytes / (1 << 30):.2f} GiB; stored {', '.join(sorted(arrays))}")
    return {
        "path": path(written),
        "model": params["model"],
        "step": params["step"],
        "checkpoint_commit": commit,
        **_settings_metadata(params),
        "tokens": len(indices),
        "candidate_tokens": candidates,
        **{k: v for k, v in result.metadata().items() if k not in ("method", "tokens")},
        **summary,
        "parameters": md(f"{result.num_parameters:,} elements in {len(result.parameter_names)} tensors: "
                         + ", ".join(f"`{n}`" for n in result.parameter_names)),
    }
