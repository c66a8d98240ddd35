"""Stage settings: Dagster resources whose fields decide what an asset computes.

Every field left at ``None`` takes the default of the model's family (:mod:`quanta_core.presets`).
The fields of a :class:`SettingsResource` enter the code version of the assets that use it
(:mod:`quanta_assets.code_versions`), so changing one marks exactly those partitions stale —
except the fields named in ``execution_fields``, which choose where or how fast, not what.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Optional

import dagster as dg

from quanta_core.clustering import spectral as clustering
from quanta_core.corpus.selection import FILTERS
from quanta_core.learning import clusters as learning_clusters
from quanta_core.learning.fit import FitSettings
from quanta_core.learning.spectrum import SPECTRUM_BINS
from quanta_core.learning.times import CHUNK_TOKENS
from quanta_core.presets import Preset, preset_for
from quanta_core.report import page as report
from quanta_core.similarity import DEFAULT_PROJECTION_DIM, METHODS


def _plain(value: Any) -> Any:
    """A JSON-able form of a field value (``dg.EnvVar`` read from the environment)."""
    if isinstance(value, dg.EnvVar):
        return value.get_value()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields shape results. ``execution_fields``: fields left out of the
    fingerprint (device, batch sizes, memory budgets: where and how fast, not what)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset()

    def fingerprint(self) -> dict:
        """The fields that decide what is computed, JSON-able, plus the class name."""
        names = [n for n in type(self).model_fields if n not in self.execution_fields]
        return {"type": type(self).__name__, **{n: _plain(getattr(self, n)) for n in names}}


class LossSettings(SettingsResource):
    """Settings of ``pile_losses`` (the original's ``evaluate_pile_losses.py``).

    ``num_documents``: losses for the first N documents of ``pile_canonical`` (``None``: the
    family's ``loss_documents``, capped at the corpus). ``batch_tokens``: padded tokens per
    forward pass; ``logits_chunk``: positions per unembedding + cross-entropy chunk (``None``:
    by device, see ``quanta_core.models.losses.default_batching``). ``step0_tolerance_nats``: the
    step-0 check warns further than this from ln(vocab).
    """

    execution_fields: ClassVar[frozenset[str]] = frozenset({"batch_tokens", "logits_chunk"})
    num_documents: Optional[int] = None
    batch_tokens: Optional[int] = None
    logits_chunk: Optional[int] = None
    step0_tolerance_nats: float = 1.0

    def documents_for(self, model: str, corpus_documents: int) -> int:
        """Documents to evaluate for ``model`` on a corpus of ``corpus_documents`` documents."""
        if self.num_documents is None:
            return min(preset_for(model).loss_documents, corpus_documents)
        if not 0 <= self.num_documents <= corpus_documents:
            raise ValueError(f"loss_settings.num_documents = {self.num_documents}, but pile_canonical has "
                             f"{corpus_documents} documents")
        return int(self.num_documents)


class SimilaritySettings(SettingsResource):
    """Settings of ``quanta_similarity`` (the original's ``similarity_matrix_v1.py``).

    Selection (``None``: the family's preset — the original README's run for Pythia):
    ``threshold_bits`` (strict, in bits), ``filter`` (``none`` | ``present_trigram`` |
    ``present_bigram``), ``skip`` (every skip-th qualifying token), ``num_tokens``.
    ``method``: ``exact`` | ``projected`` (``projection`` — ``countsketch`` | ``sjlt`` | ``sjlt-<s>`` —
    to ``projection_dim`` ≤ 2^18, ``seed``) |
    ``reference`` (the original's algorithm). ``memory_budget_gib``: gradient storage for
    ``exact`` (default 85 % of free GPU memory / 50 % of available RAM). ``resident_dtype``:
    ``auto`` | ``float32`` | ``float16``. ``exclude_final_layer_norm``: False = the original's
    parameter set; True = the paper's text. ``gram_mode``: ``ieee`` (float32 products summed in
    float64) | ``3xtf32`` (CUDA tensor cores, split in three products; docs/similarity.md).
    ``neighbors``: 0 = the dense ``[S, S]`` matrix; k > 0 = the sparse road: only each token's k
    most similar other tokens are kept (``knn_indices.npy`` / ``knn_cosines.npy``, for large S).
    """

    execution_fields: ClassVar[frozenset[str]] = frozenset({"memory_budget_gib"})
    threshold_bits: Optional[float] = None
    filter: Optional[str] = None
    skip: Optional[int] = None
    num_tokens: Optional[int] = None
    method: str = "exact"
    memory_budget_gib: Optional[float] = None
    resident_dtype: str = "auto"
    exclude_final_layer_norm: bool = False
    projection_dim: int = DEFAULT_PROJECTION_DIM
    projection: str = "countsketch"
    seed: int = 0
    gram_mode: str = "ieee"
    neighbors: int = 0

    def selection_for(self, model: str) -> dict:
        """``threshold_bits``, ``filter``, ``skip``, ``num_tokens`` for ``model`` (validated)."""
        preset: Preset = preset_for(model)
        chosen = {name: getattr(self, name) if getattr(self, name) is not None else getattr(preset, name)
                  for name in ("threshold_bits", "filter", "skip", "num_tokens")}
        if chosen["filter"] not in FILTERS:
            raise ValueError(f"similarity_settings.filter must be one of {FILTERS}, got {chosen['filter']!r}")
        if self.method not in METHODS:
            raise ValueError(f"similarity_settings.method must be one of {METHODS}, got {self.method!r}")
        if self.neighbors < 0 or (self.neighbors and self.method == "reference"):
            raise ValueError(f"similarity_settings.neighbors must be 0 (dense matrix) or k > 0 with method exact "
                             f"or projected, got {self.neighbors} with method {self.method!r}")
        return chosen


class ClusterSettings(SettingsResource):
    """Settings of ``quanta_clusters`` (the original's ``clusters_from_similarity_matrix_v1.py``):
    ``num_clusters`` k (``None``: the family's preset, 400 for Pythia as the paper);
    ``n_init`` k-means restarts; ``random_state`` of the embedding and k-means.

    Dense matrix (the exact road, scikit-learn's labels): ``eigen_solver`` ``arpack`` (scikit-learn's
    call) | ``eigh`` (LAPACK, faster; docs/clustering.md). kNN files (the sparse road,
    :mod:`quanta_core.clustering.sparse`): ``knn_eigen_solver`` ``amg`` | ``lobpcg`` | ``arpack``,
    ``kmeans`` ``full`` | ``minibatch``. ``n_components``: eigenvectors of the embedding (``None``:
    k, as scikit-learn). Execution only: ``memory_budget_gib`` (either road fails before any work
    when its memory estimate exceeds it; ``None``: 50 % of available RAM) and
    ``compare_neighbors`` (k > 0 on the exact road: also cluster the top-k graph of the same matrix
    by the sparse road and put its ARI / NMI against the exact labels into the metadata).
    """

    execution_fields: ClassVar[frozenset[str]] = frozenset({"memory_budget_gib", "compare_neighbors"})
    num_clusters: Optional[int] = None
    n_init: int = clustering.N_INIT
    random_state: int = clustering.RANDOM_STATE
    eigen_solver: str = clustering.EIGEN_SOLVER
    knn_eigen_solver: str = "amg"
    n_components: Optional[int] = None
    kmeans: str = "full"
    memory_budget_gib: Optional[float] = None
    compare_neighbors: int = 0

    def clusters_for(self, model: str) -> int:
        return int(self.num_clusters) if self.num_clusters is not None else preset_for(model).num_clusters

    def check(self) -> None:
        """``ValueError`` naming the setting that is not one of its choices."""
        from quanta_core.clustering.eigensolvers import EIGEN_SOLVERS
        from quanta_core.clustering.sparse import KMEANS_METHODS, KNN_EIGEN_SOLVERS

        for name, choices in (("eigen_solver", EIGEN_SOLVERS), ("knn_eigen_solver", KNN_EIGEN_SOLVERS),
                              ("kmeans", KMEANS_METHODS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"cluster_settings.{name} must be one of {choices}, got {getattr(self, name)!r}")
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"cluster_settings.n_components must be ≥ 1 or None, got {self.n_components}")


class ReportSettings(SettingsResource):
    """Settings of ``quanta_report`` (the original's ``html_from_clusters.py``): tokens of context
    shown ``before`` and ``after`` each sample's target token; ``max_page_mb``: size budget of the
    page (MB; the page holds a capped number of samples per cluster when all would not fit)."""

    before: int = report.BEFORE
    after: int = report.AFTER
    max_page_mb: float = report.MAX_PAGE_BYTES / 1e6


class TrainingDynamicsSettings(SettingsResource):
    """Settings of ``quanta_training_dynamics``.

    ``threshold_nats``: a cluster is learned at the first step from which its ``statistic``
    (``mean`` | ``median`` | ``q25`` | ``q75``) stays strictly below this at every later step
    (``None``: the family's ``learned_threshold_nats``). ``reference_step``: whose clusters are
    followed (``None``: the latest step with ``quanta_clusters``). ``top_tokens``: most common
    target tokens shown per cluster on the page.

    "Learned at once" (with ``token_learning_times``; :func:`quanta_core.learning.clusters.learned_at_once`):
    ``permutations`` of the cluster labels within ``loss_bins`` quantile bins of the reference-step
    loss (seed ``permutation_seed``); clusters with ≥ ``min_cluster_tokens`` well-fit tokens are
    tested; tighter than random when the Benjamini–Hochberg q < ``alpha``.
    """

    threshold_nats: Optional[float] = None
    reference_step: Optional[str] = None
    statistic: str = "mean"
    top_tokens: int = 5
    permutations: int = learning_clusters.PERMUTATIONS
    loss_bins: int = learning_clusters.LOSS_BINS
    min_cluster_tokens: int = learning_clusters.MIN_TOKENS
    alpha: float = learning_clusters.ALPHA
    permutation_seed: int = 0

    def threshold_for(self, model: str) -> float:
        if self.threshold_nats is not None:
            return float(self.threshold_nats)
        return preset_for(model).learned_threshold_nats


class _SigmoidFitSettings(SettingsResource):
    """The per-token sigmoid fit's flag rule (:class:`quanta_core.learning.fit.FitSettings`; a token
    is well fit when none applies): ``min_drop_nats`` (|drop| below: no drop), ``min_r2`` (R² below:
    noisy), ``edge_fraction`` (midpoint this close to either end: edge), ``min_points`` (fewer
    positions: underdetermined). Execution only: ``workers`` (threads fitting chunks at once;
    ``None``: the CPU count, at most 4) and ``chunk_tokens`` (tokens per chunk; working memory ≤
    workers × 12 × chunk_tokens × positions × 8 bytes) — results are the same for any choice."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"workers", "chunk_tokens"})
    min_drop_nats: float = FitSettings.min_drop_nats
    min_r2: float = FitSettings.min_r2
    edge_fraction: float = FitSettings.edge_fraction
    min_points: int = FitSettings.min_points
    workers: Optional[int] = None
    chunk_tokens: int = CHUNK_TOKENS

    def fit_settings(self) -> FitSettings:
        return FitSettings(min_drop_nats=self.min_drop_nats, min_r2=self.min_r2, edge_fraction=self.edge_fraction,
                           min_points=self.min_points)

    def worker_count(self) -> int:
        if self.workers is not None:
            if self.workers < 1:
                raise ValueError(f"{type(self).__name__}.workers must be ≥ 1, got {self.workers}")
            return int(self.workers)
        return max(1, min(4, os.cpu_count() or 1))


class LearningTimeSettings(_SigmoidFitSettings):
    """Settings of ``token_learning_times`` (the flag rule and execution fields above), plus
    ``min_step``: fit only the checkpoints from this step number on (0: all; e.g. 1000 to look past
    the first drop from the uniform to the unigram loss, which every token makes in the first ~100
    steps) and ``spectrum_bins``: bins of the learning-time spectrum (edges at checkpoints)."""

    min_step: int = 0
    spectrum_bins: int = SPECTRUM_BINS


class ScaleCurveSettings(_SigmoidFitSettings):
    """Settings of ``token_scale_curves`` (each token's loss against parameter count across a
    family): the flag rule and execution fields above, and ``embeddings``: whether N counts the
    input and output embedding matrices (True: the total, as Pythia's size names do)."""

    embeddings: bool = True
