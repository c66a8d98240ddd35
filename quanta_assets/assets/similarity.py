"""``quanta_similarity`` (per checkpoint): the QDG gradient cosine-similarity matrix of the
selected low-loss tokens (quanta_core.selection + quanta_core.similarity)."""

import time
from typing import Optional

import dagster as dg
import numpy as np

from quanta_core.canonical import CanonicalCorpus
from quanta_core.selection import FILTERS, PAPER_NUM_TOKENS, PAPER_SKIP, PAPER_THRESHOLD_BITS, select_tokens
from quanta_core.similarity import DEFAULT_PROJECTION_DIM, METHODS, similarity_matrix
from quanta_assets.model_loader import ModelLoader
from quanta_assets.partitions import DEMO_MODEL, checkpoint_partitions, model_and_step
from quanta_assets.resources import QuantaCache

# The demo suite is a small model trained briefly: few tokens are below 0.1 nats. Adjust here.
DEMO_THRESHOLD_BITS = 1.0
DEMO_FILTER = "present_trigram"
DEMO_SKIP = 2
DEMO_NUM_TOKENS = 600


class SimilaritySettings(dg.ConfigurableResource):
    """Settings of ``quanta_similarity`` (the original's ``similarity_matrix_v1.py``).

    ``None`` = the default for the model: the original README's run for Pythia
    (threshold 0.14426950408889636 bits = 0.1 nats, filter ``present_trigram``, skip 50,
    10,000 tokens), demo-sized values for the demo suite (1 bit, ``present_trigram``, skip 2, 600).
    ``filter``: ``none`` | ``present_trigram`` | ``present_bigram``.
    ``method``: ``exact`` (default) | ``projected`` (CountSketch to ``projection_dim``) |
    ``reference`` (the original's slow algorithm). ``memory_budget_gib``: gradient storage for
    ``exact`` (default: 85 % of free GPU memory / 50 % of available RAM).
    ``exclude_final_layer_norm``: False = the original's parameter set (final layer norm
    included); True = the paper's text (all layer norms excluded).
    """

    threshold_bits: Optional[float] = None
    filter: Optional[str] = None
    skip: Optional[int] = None
    num_tokens: Optional[int] = None
    method: str = "exact"
    memory_budget_gib: Optional[float] = None
    resident_dtype: str = "auto"
    exclude_final_layer_norm: bool = False
    projection_dim: int = DEFAULT_PROJECTION_DIM
    seed: int = 0

    def resolved(self, model: str) -> dict:
        demo = model == DEMO_MODEL
        chosen = {
            "threshold_bits": self.threshold_bits if self.threshold_bits is not None
            else (DEMO_THRESHOLD_BITS if demo else PAPER_THRESHOLD_BITS),
            "filter": self.filter if self.filter is not None else (DEMO_FILTER if demo else "present_trigram"),
            "skip": self.skip if self.skip is not None else (DEMO_SKIP if demo else PAPER_SKIP),
            "num_tokens": self.num_tokens if self.num_tokens is not None else (DEMO_NUM_TOKENS if demo else PAPER_NUM_TOKENS),
        }
        if chosen["filter"] not in FILTERS:
            raise ValueError(f"similarity_settings.filter must be one of {FILTERS}, got {chosen['filter']!r}")
        if self.method not in METHODS:
            raise ValueError(f"similarity_settings.method must be one of {METHODS}, got {self.method!r}")
        return chosen


RESOURCES = {"similarity_settings": SimilaritySettings()}


@dg.asset(
    partitions_def=checkpoint_partitions,
    deps=["model_checkpoint"],
    group_name="similarity",
    code_version="1",
    description=(
        "QDG similarity of the checkpoint: the selected low-loss tokens (loss < threshold in bits, strict, "
        "not flagged by the induction filter, every skip-th, first num_tokens; defaults = the original "
        "README run for Pythia) and the cosine similarity of their per-token loss gradients w.r.t. all "
        "parameters except the input embedding, the unembedding and the per-layer layer norms (the final "
        "layer norm is included, as in the original). Directory `<cache>/<model>/<step>/quanta_similarity/`: "
        "`indices.npy` int64 [S] canonical indices (ascending) and `matrix.npy` float32 [S, S], symmetric, "
        "diagonal 1, rows/columns in the order of indices."
    ),
)
def quanta_similarity(
    context: dg.AssetExecutionContext,
    pile_canonical: dict,
    pile_losses: np.ndarray,
    induction_filters: dict,
    models: ModelLoader,
    cache: QuantaCache,
    similarity_settings: SimilaritySettings,
) -> dict:
    model_name, step = model_and_step(context)
    settings = similarity_settings
    chosen = settings.resolved(model_name)
    losses = np.asarray(pile_losses)
    flags = None if chosen["filter"] == "none" else np.asarray(induction_filters[chosen["filter"]])
    indices = select_tokens(
        losses, flags, threshold_bits=chosen["threshold_bits"], skip=chosen["skip"],
        num_tokens=chosen["num_tokens"], filter_name=chosen["filter"],
    )
    corpus = CanonicalCorpus.from_arrays(pile_canonical)
    loaded = models.load(model_name, step, cache.path, log=context.log)
    context.log.info(
        f"{model_name} {step}: {len(indices):,} tokens selected of {len(losses):,} (threshold "
        f"{chosen['threshold_bits']:g} bits, filter {chosen['filter']}, skip {chosen['skip']}); method "
        f"{settings.method} on {loaded.device} ({loaded.dtype})"
    )
    last_log = [time.perf_counter()]

    def progress(p) -> None:
        now = time.perf_counter()
        if now - last_log[0] >= 10 or p.gradients_done == p.gradients_total:
            last_log[0] = now
            context.log.info(
                f"{p.gradients_done:,}/{p.gradients_total:,} gradient computations for {p.tokens_total:,} tokens "
                f"({p.gradients_done / max(p.gradients_total, 1):.0%}, block {p.block + 1}/{p.blocks}), "
                f"{p.rate:,.1f} gradients/s, ~{p.eta_seconds:.0f} s left"
            )

    budget = None if settings.memory_budget_gib is None else int(settings.memory_budget_gib * (1 << 30))
    result = similarity_matrix(
        loaded.model, corpus, indices, method=settings.method, memory_budget_bytes=budget,
        exclude_final_layer_norm=settings.exclude_final_layer_norm, resident_dtype=settings.resident_dtype,
        projection_dim=settings.projection_dim, seed=settings.seed, progress=progress,
    )
    summary = result.metadata()
    context.add_output_metadata(
        {
            "model": model_name,
            "step": step,
            "checkpoint_commit": str(getattr(loaded, "commit", "")),
            **{f"setting_{k}": v for k, v in chosen.items()},
            "setting_method": settings.method,
            "setting_memory_budget_gib": settings.memory_budget_gib,
            "setting_resident_dtype": settings.resident_dtype,
            "setting_exclude_final_layer_norm": settings.exclude_final_layer_norm,
            "setting_projection_dim": settings.projection_dim if settings.method == "projected" else None,
            "setting_seed": settings.seed if settings.method == "projected" else None,
            "tokens": len(indices),
            "candidate_tokens": len(losses),
            **{k: v for k, v in summary.items() if k not in ("method", "tokens")},
            "mean_offdiagonal_cosine": float((result.matrix.sum() - np.trace(result.matrix))
                                             / max(len(indices) * (len(indices) - 1), 1)),
            "parameters": dg.MetadataValue.md(
                f"{result.num_parameters:,} elements in {len(result.parameter_names)} tensors: "
                + ", ".join(f"`{n}`" for n in result.parameter_names)
            ),
        }
    )
    return {"indices": indices.astype(np.int64), "matrix": result.matrix.astype(np.float32)}
