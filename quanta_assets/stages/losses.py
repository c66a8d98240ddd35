"""Stage ``pile_losses``: the checkpoint's loss (nats) on every predictable token of the first N
documents, written to ``<cache>/<model>/<step>/pile_losses.npy``.

``params``: ``cache_dir``, ``model``, ``step``, ``corpus`` (the ``pile_canonical`` directory),
``output`` (the suffix-less output path), ``num_documents``, ``batch_tokens`` / ``logits_chunk``
(``None``: by device), ``loader`` (``device``, ``dtype``, ``hub_cache_dir``, ``offline``).
"""

from __future__ import annotations

import math
import time

import numpy as np

from quanta_assets.stages import md, path
from quanta_assets.stages.loading import load_model
from quanta_core import store
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.models.losses import default_batching, token_losses
from quanta_core.presets import LOW_LOSS_NATS
from quanta_core.progress import RateLog

HISTOGRAM_EDGES = [0.0, 0.01, 0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, math.inf]  # nats


def loss_histogram_markdown(losses: np.ndarray) -> str:
    """A Markdown table of the loss distribution (bins in nats, counts, shares, a text bar)."""
    counts, _ = np.histogram(losses, bins=HISTOGRAM_EDGES)
    total = max(int(counts.sum()), 1)
    rows = ["| loss (nats) | tokens | share | |", "|---|---:|---:|---|"]
    for lo, hi, n in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:], counts):
        share = n / total
        label = f"[{lo:g}, {hi:g})" if math.isfinite(hi) else f"≥ {lo:g}"
        rows.append(f"| {label} | {n:,} | {share:.1%} | {'█' * round(40 * share)} |")
    return "\n".join(rows)


def summary_metadata(losses: np.ndarray) -> dict:
    """Mean, median, share under 0.1 nats and the histogram of the finite losses."""
    finite = losses[np.isfinite(losses)]
    if not len(finite):
        return {"mean_loss_nats": float("nan"), "median_loss_nats": float("nan"), "fraction_below_0.1_nats": 0.0,
                "loss_histogram": md(loss_histogram_markdown(finite))}
    return {
        "mean_loss_nats": float(finite.mean()),
        "median_loss_nats": float(np.median(finite)),
        "fraction_below_0.1_nats": float((finite < LOW_LOSS_NATS).mean()),
        "loss_histogram": md(loss_histogram_markdown(finite)),
    }


def run(params: dict, log) -> dict:
    corpus = CanonicalCorpus.load(params["corpus"])
    num_documents = int(params["num_documents"])
    total = int(corpus.starts[num_documents])
    loaded = load_model(params, log)
    default_tokens, default_chunk = default_batching(loaded.device)
    batch_tokens = params.get("batch_tokens") or default_tokens
    logits_chunk = params.get("logits_chunk") or default_chunk
    log(f"{params['model']} {params['step']}: losses of {total:,} predictable tokens in {num_documents:,} documents "
        f"on {loaded.device} ({loaded.dtype}), batch_tokens {batch_tokens}, logits_chunk {logits_chunk}")
    started = time.perf_counter()
    losses = token_losses(
        loaded.model, corpus, num_documents=num_documents, batch_tokens=batch_tokens, logits_chunk=logits_chunk,
        device=loaded.device, dtype=loaded.dtype, progress=RateLog(log, total, "tokens"),
    )
    seconds = time.perf_counter() - started
    checkpoint = loaded.metadata()
    loaded.release()
    written = store.write_value(params["output"], losses)
    return {
        "path": path(written),
        "num_documents": num_documents,
        "num_tokens": len(losses),
        **summary_metadata(losses),
        "tokens_per_second": round(len(losses) / max(seconds, 1e-9)),
        "seconds": round(seconds, 2),
        **checkpoint,
        "batch_tokens": batch_tokens,
        "logits_chunk": logits_chunk,
        "num_documents_setting": params.get("num_documents_setting"),
    }
