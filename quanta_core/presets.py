"""Model families and their defaults, in one place.

Two families: Pythia (``pythia-*``, the paper's models; defaults are the original README's run)
and the embedded demo suite (``quanta-demo``, a tiny model trained here; defaults sized so that
``make demo`` finds enough low-loss tokens and runs in minutes). Every stage setting left at
``None`` resolves through :func:`preset_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEMO_MODEL = "quanta-demo"
"""The embedded demo suite: a small GPT-NeoX trained by the project on the mini-Pile."""

_SIZES = ["14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
_V0_SIZES = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
FAMILIES: dict[str, list[str]] = {
    "pythia": [f"pythia-{s}" for s in _SIZES],
    "pythia-deduped": [f"pythia-{s}-deduped" for s in _SIZES],
    "pythia-v0": [f"pythia-{s}-v0" for s in _V0_SIZES],
    "pythia-deduped-v0": [f"pythia-{s}-deduped-v0" for s in _V0_SIZES],
}
"""Model-size families (models in size order), trained on the same data in the same order: the
current Pythia suite (10 sizes, on the Pile and the deduplicated Pile) and the original ``-v0``
suite (8 sizes; the one arXiv 2606.29858 fits). ``token_scale_curves`` fits across one family."""
PYTHIA_MODELS: list[str] = [model for models in FAMILIES.values() for model in models]
MODELS: list[str] = [DEMO_MODEL, *PYTHIA_MODELS]

# Stage defaults that are the same for every family: the one place they are written (each stage's
# options object and its settings resource take them from here).
PROJECTION_DIM = 8192
"""``projected``: width of the gradient sketch (≤ 2^18)."""
N_INIT = 30
"""k-means restarts of the spectral clustering (the original's)."""
RANDOM_STATE = 0
"""Seed of the spectral embedding and of k-means."""
EIGEN_SOLVER = "arpack"
"""Eigensolver of the exact road: scikit-learn's call; ``eigh`` gives the same labels on our tests."""
KNN_EIGEN_SOLVER = "amg"
"""Eigensolver of the sparse road (the kNN graph)."""
CONTEXT_BEFORE, CONTEXT_AFTER = 300, 0
"""Tokens of context shown before / after each sample's target in the report (the original's)."""
MAX_PAGE_BYTES = 16_000_000
"""Size budget of the report page, bytes (first cluster drawn in < 1 s: docs/benchmarks.md)."""
PERMUTATIONS, LOSS_BINS, MIN_CLUSTER_TOKENS, ALPHA = 999, 10, 5, 0.05
"""The learned-at-once test: permutations, loss strata, well-fit tokens a cluster needs, FDR level."""

PADDED_VOCAB = 50_304
"""Pythia's padded vocabulary (the tokenizer has 50,277 entries; ln differs by 5e-4)."""

LOW_LOSS_NATS = 0.1
"""The original's selection threshold in nats (its ``--loss_threshold 0.14426950408889636`` bits)."""
PAPER_THRESHOLD_BITS = 0.14426950408889636
assert math.isclose(PAPER_THRESHOLD_BITS * math.log(2), LOW_LOSS_NATS, rel_tol=1e-15)


@dataclass(frozen=True)
class Preset:
    """The defaults of one model family.

    ``loss_documents``: loss tables cover the first N documents of ``pile_canonical``.
    ``threshold_bits``, ``filter``, ``skip``, ``num_tokens``: token selection for similarity.
    ``num_clusters``: k of spectral clustering. ``learned_threshold_nats``: a cluster is
    learned once its mean loss stays below this (training dynamics).
    """

    name: str
    loss_documents: int
    threshold_bits: float
    filter: str
    skip: int
    num_tokens: int
    num_clusters: int
    learned_threshold_nats: float


PYTHIA = Preset(
    name="pythia", loss_documents=20_000, threshold_bits=PAPER_THRESHOLD_BITS, filter="present_trigram",
    skip=50, num_tokens=10_000, num_clusters=400, learned_threshold_nats=LOW_LOSS_NATS,
)
"""The original README's run (20,000 documents, 0.1 nats, trigram filter, skip 50, 10,000 tokens,
400 clusters); a cluster counts as learned once its mean loss is as low as the losses that got
its tokens selected."""

DEMO = Preset(
    name="quanta-demo", loss_documents=400, threshold_bits=1.0, filter="present_trigram",
    skip=2, num_tokens=600, num_clusters=30, learned_threshold_nats=1.0,
)
"""The demo suite is small and trained briefly: few tokens are below 0.1 nats, so it selects at
1 bit; loss tables cover the first 400 mini-Pile documents (~122k tokens, ~10 s per checkpoint on
2 CPU cores); 1 nat separates its early (≈ ln 50,304 ≈ 10.8 nats) from its trained loss."""


def preset_for(model: str) -> Preset:
    """The preset of ``model``'s family: :data:`DEMO` for ``quanta-demo``, else :data:`PYTHIA`."""
    return DEMO if model == DEMO_MODEL else PYTHIA

STABILITY_SCHEME = "seeds"
"""Resampling scheme of the cluster stability (``seeds`` | ``subsample``; docs/clustering.md)."""
STABILITY_RESAMPLES, STABILITY_FRACTION, STABILITY_RANDOM_STATE = 20, 0.8, 0
"""Re-clusterings R, the fraction of tokens each ``subsample`` keeps, the seed of the resampling."""
COHERENCE_NULL_GROUPS = 100
"""Random groups per cluster (label permutations) behind the coherence z-score."""
SWEEP_BOOTSTRAPS = 1000
"""Bootstrap draws of the envelope slope's interval (cluster sizes resampled multinomially)."""
