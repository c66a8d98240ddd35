"""Stage settings: Dagster resources whose fields decide what an asset computes.

Every field carries its help (``description``, shown in the launchpad) and its constraints
(ranges, choices), checked by pydantic when the resource is built — before a run starts. A field
left at ``None`` takes the default of the model's family (:mod:`quanta_core.presets`); each
resource resolves them with one method, ``for_model``, into the stage's options. The fields of a
:class:`SettingsResource` enter the code version of the assets that use it
(:mod:`quanta_assets.code_versions`), except ``execution_fields`` (where or how fast, not what).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional

import dagster as dg
from pydantic import Field, field_validator, model_validator

from quanta_core import presets
from quanta_core.clustering.roads import ClusterOptions
from quanta_core.clustering.stability import StabilityOptions
from quanta_core.corpus.minipile import DEFAULT_NUM_DOCUMENTS, build_minipile
from quanta_core.corpus.selection import FILTERS, SelectionOptions
from quanta_core.host_memory import GIB, host_budget_bytes
from quanta_core.learning.fit import FitSettings
from quanta_core.learning.spectrum import SPECTRUM_BINS
from quanta_core.learning.times import CHUNK_TOKENS
from quanta_core.paths import PILE_ENV, corpus_dir, pile_file
from quanta_core.presets import preset_for
from quanta_core.similarity import SimilarityOptions
from quanta_core.steps import step_number


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


def _bytes(gib: float | None) -> int | None:
    return None if gib is None else int(gib * GIB)


class SettingsResource(dg.ConfigurableResource):
    """A resource whose fields shape results. ``execution_fields``: fields left out of the
    fingerprint (device, batch sizes, memory budgets: where and how fast, not what)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset()

    def fingerprint(self) -> dict:
        """The fields that decide what is computed, JSON-able, plus the class name."""
        names = [n for n in type(self).model_fields if n not in self.execution_fields]
        return {"type": type(self).__name__, **{n: _plain(getattr(self, n)) for n in names}}


class PileSource(SettingsResource):
    """The corpus: a Pile-format ``.jsonl.zst`` file, or the embedded mini-Pile when none is set."""

    REAL_PILE_DEFAULT_DOCUMENTS: ClassVar[int] = 200_000  # the original's pile-canonical size
    pile_path: Optional[str] = Field(None, description=(
        f"A Pile-format .jsonl.zst file (e.g. the Pile's test.jsonl.zst). Default ${PILE_ENV}; empty = the "
        "embedded mini-Pile, built into <cache>/corpus on first use."))
    num_documents: Optional[int] = Field(None, ge=1, description=(
        "Leading documents to tokenize. Default: 200,000 of a real Pile file (the original's), all of the "
        "mini-Pile."))
    minipile_documents: int = Field(DEFAULT_NUM_DOCUMENTS, ge=1, description="Documents of the embedded mini-Pile.")
    tokenizer_path: Optional[str] = Field(None, description=(
        "A tokenizer.json (or a directory holding one). Default: Pythia's, shipped offline."))

    @property
    def configured_path(self) -> str | None:
        return self.pile_path or pile_file() or None

    @property
    def is_embedded(self) -> bool:
        return self.configured_path is None

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "pile_path": self.configured_path}  # the path may come from $QUANTA_PILE

    def resolve(self, cache_dir: Path) -> tuple[Path, int | None]:
        """(file to read, number of documents or ``None`` for all); builds the mini-Pile if needed."""
        if self.is_embedded:
            return build_minipile(corpus_dir(cache_dir), self.minipile_documents), self.num_documents
        path = Path(self.configured_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Pile file not found: {path} (from pile_path / ${PILE_ENV})")
        return path, self.num_documents or self.REAL_PILE_DEFAULT_DOCUMENTS


class LossSettings(SettingsResource):
    """Settings of ``pile_losses`` (the original's ``evaluate_pile_losses.py``)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"batch_tokens", "logits_chunk"})
    num_documents: Optional[int] = Field(None, ge=0, description=(
        "Losses for the first N documents of pile_canonical. Default: the family's (20,000 for Pythia, 400 for "
        "the demo), capped at the corpus."))
    batch_tokens: Optional[int] = Field(None, ge=1, description="Execution: padded tokens per forward pass.")
    logits_chunk: Optional[int] = Field(None, ge=1, description=(
        "Execution: positions per unembedding + cross-entropy chunk (default by device)."))
    step0_tolerance_nats: float = Field(1.0, gt=0, description=(
        "The step-0 check warns when the mean loss is further than this from ln(vocab), nats."))

    def for_model(self, model: str, corpus_documents: int) -> int:
        """Documents to evaluate for ``model`` on a corpus of ``corpus_documents`` documents."""
        if self.num_documents is None:
            return min(preset_for(model).loss_documents, corpus_documents)
        if self.num_documents > corpus_documents:
            raise ValueError(f"loss_settings.num_documents = {self.num_documents}, but pile_canonical has "
                             f"{corpus_documents} documents")
        return int(self.num_documents)


class SimilaritySettings(SettingsResource):
    """Settings of ``quanta_similarity`` (the original's ``similarity_matrix_v1.py``): which tokens
    (``None``: the family's preset, the original README's run for Pythia) and how their gradient
    cosines are computed (docs/similarity.md)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"memory_budget_gib"})
    threshold_bits: Optional[float] = Field(None, gt=0, description=(
        "Select tokens whose loss is strictly below this, in bits (Pythia 0.1443 = 0.1 nats; demo 1.0)."))
    filter: Optional[str] = Field(None, description=(
        "Leave out tokens that copying could predict: none | present_trigram | present_bigram (default "
        "present_trigram)."))
    skip: Optional[int] = Field(None, ge=1, description="Keep every skip-th qualifying token (Pythia 50, demo 2).")
    num_tokens: Optional[int] = Field(None, ge=1, description="Tokens to select, S (Pythia 10,000, demo 600).")
    method: Literal["exact", "projected", "reference"] = Field("exact", description=(
        "exact: every gradient exactly; projected: a seeded sketch of each gradient; reference: the original's "
        "algorithm."))
    memory_budget_gib: Optional[float] = Field(None, gt=0, description=(
        "Execution: gradient storage for exact and the kNN parts, GiB (default 85 % of free GPU memory / 50 % of "
        "available RAM)."))
    resident_dtype: Literal["auto", "float32", "float16"] = Field("auto", description=(
        "exact: precision of stored gradients (auto: float32 when all fit)."))
    exclude_final_layer_norm: bool = Field(False, description=(
        "False: the original code's parameter set (final layer norm included); True: the paper's text."))
    projection_dim: int = Field(presets.PROJECTION_DIM, ge=1, le=1 << 18, description=(
        "projected: width of the sketch (≤ 2^18)."))
    projection: str = Field("countsketch", pattern=r"^(countsketch|sjlt(-[0-9]+)?)$", description=(
        "projected: countsketch | sjlt | sjlt-<s> (s nonzeros per column)."))
    seed: int = Field(0, description="projected: seed of the sketch.")
    gram_mode: Literal["ieee", "3xtf32", "3xtf32-emulated"] = Field("ieee", description=(
        "Gram products: ieee (float32, summed in float64) | 3xtf32 (CUDA tensor cores, split in three)."))
    absolute_gradients: bool = Field(False, description=(
        "True: cosines of the element-wise |gradient|, the paper's second matrix C_abs = |G||G|ᵀ (exact, projected)."))
    neighbors: int = Field(0, ge=0, description=(
        "0: the dense S × S matrix; k > 0: the sparse road, only each token's k most similar tokens (large S)."))

    @field_validator("filter")
    @classmethod
    def _a_filter(cls, value: str | None) -> str | None:
        if value is not None and value not in FILTERS:
            raise ValueError(f"filter must be one of {FILTERS}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _neighbors_need_exact_or_projected(self):
        if (self.neighbors or self.absolute_gradients) and self.method == "reference":
            raise ValueError(f"similarity_settings.neighbors = {self.neighbors} / absolute_gradients = "
                             f"{self.absolute_gradients} need method exact or projected, not reference")
        return self

    def for_model(self, model: str) -> tuple[SelectionOptions, SimilarityOptions]:
        """The selection (the family's preset where a field is ``None``) and the similarity options."""
        preset = preset_for(model)
        chosen = {name: getattr(self, name) if getattr(self, name) is not None else getattr(preset, name)
                  for name in ("threshold_bits", "filter", "skip", "num_tokens")}
        options = SimilarityOptions(
            method=self.method, memory_budget_bytes=_bytes(self.memory_budget_gib),
            exclude_final_layer_norm=self.exclude_final_layer_norm, resident_dtype=self.resident_dtype,
            projection_dim=self.projection_dim, projection=self.projection, seed=self.seed,
            gram_mode=self.gram_mode, neighbors=self.neighbors, absolute_gradients=self.absolute_gradients)
        return SelectionOptions(**chosen), options


class ClusterSettings(SettingsResource):
    """Settings of ``quanta_clusters`` (the original's ``clusters_from_similarity_matrix_v1.py``;
    the two roads: docs/clustering.md)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"memory_budget_gib", "compare_neighbors"})
    num_clusters: Optional[int] = Field(None, ge=1, description="k, clusters (Pythia 400 as the paper; demo 30).")
    n_init: int = Field(presets.N_INIT, ge=1, description="k-means restarts.")
    random_state: int = Field(presets.RANDOM_STATE, description="Seed of the spectral embedding and k-means.")
    eigen_solver: Literal["arpack", "eigh"] = Field(presets.EIGEN_SOLVER, description=(
        "Dense matrix: arpack (scikit-learn's call) | eigh (LAPACK, faster)."))
    knn_eigen_solver: Literal["amg", "lobpcg", "arpack"] = Field(presets.KNN_EIGEN_SOLVER, description=(
        "kNN graph (the sparse road): eigensolver of the embedding."))
    n_components: Optional[int] = Field(None, ge=1, description="Eigenvectors of the embedding (default k).")
    kmeans: Literal["full", "minibatch"] = Field("full", description="kNN graph: k-means variant.")
    memory_budget_gib: Optional[float] = Field(None, gt=0, description=(
        "Execution: fail before any work when the road's memory estimate exceeds this, GiB (default 50 % of "
        "available RAM)."))
    compare_neighbors: int = Field(0, ge=0, description=(
        "Execution: k > 0 on the dense road also clusters its top-k graph and reports ARI / NMI against it."))

    def for_model(self, model: str) -> ClusterOptions:
        """The clustering options for ``model`` (k from the family's preset when ``None``)."""
        k = int(self.num_clusters) if self.num_clusters is not None else preset_for(model).num_clusters
        budget = _bytes(self.memory_budget_gib)
        budget = host_budget_bytes() if budget is None else budget
        return ClusterOptions(k, n_init=self.n_init, random_state=self.random_state, eigen_solver=self.eigen_solver,
                              knn_eigen_solver=self.knn_eigen_solver, n_components=self.n_components,
                              kmeans=self.kmeans, memory_budget_bytes=budget, compare_neighbors=self.compare_neighbors)


class StabilitySettings(SettingsResource):
    """Settings of ``quanta_cluster_stability`` (clusterboot, :mod:`quanta_core.clustering.stability`)."""

    scheme: Literal["seeds", "subsample"] = Field(presets.STABILITY_SCHEME, description=(
        "seeds: all tokens, other random states (the embedding once); subsample: a fraction of the tokens, the "
        "whole clustering re-run."))
    resamples: int = Field(presets.STABILITY_RESAMPLES, ge=2, description="R, re-clusterings.")
    fraction: float = Field(presets.STABILITY_FRACTION, gt=0, le=1, description="subsample: tokens each keeps.")
    random_state: int = Field(presets.STABILITY_RANDOM_STATE, description="Seed of the resampling and the null.")
    null_groups: int = Field(presets.COHERENCE_NULL_GROUPS, ge=2, description=(
        "Random groups per cluster for the coherence z-score."))
    min_stable_fraction: float = Field(0.5, ge=0, le=1, description=(
        "The check enough_stable_clusters warns when fewer clusters than this fraction are stable (≥ 0.75)."))

    def for_model(self, model: str | None = None) -> StabilityOptions:
        return StabilityOptions(scheme=self.scheme, resamples=self.resamples, fraction=self.fraction,
                                random_state=self.random_state, null_groups=self.null_groups)


class ReportSettings(SettingsResource):
    """Settings of ``quanta_report`` (the original's ``html_from_clusters.py``)."""

    before: int = Field(presets.CONTEXT_BEFORE, ge=0, description="Tokens of context shown before each target.")
    after: int = Field(presets.CONTEXT_AFTER, ge=0, description="Tokens of context shown after each target.")
    max_page_mb: float = Field(presets.MAX_PAGE_BYTES / 1e6, gt=0, description=(
        "Size budget of the page, MB; beyond it the page holds a capped number of samples per cluster."))


class TrainingDynamicsSettings(SettingsResource):
    """Settings of ``quanta_training_dynamics`` and its learned-at-once test
    (:func:`quanta_core.learning.clusters.learned_at_once`)."""

    threshold_nats: Optional[float] = Field(None, gt=0, description=(
        "A cluster is learned at the first step from which its statistic stays strictly below this, nats "
        "(Pythia 0.1, demo 1.0)."))
    reference_step: Optional[str] = Field(None, description=(
        "Whose clusters are followed (default: the latest step with quanta_clusters)."))
    statistic: Literal["mean", "median", "q25", "q75"] = Field("mean", description=(
        "Which statistic of a cluster's token losses must stay below the threshold."))
    top_tokens: int = Field(5, ge=0, description="Most common target tokens shown per cluster on the page.")
    permutations: int = Field(presets.PERMUTATIONS, ge=1, description="Learned at once: permutations of the labels.")
    loss_bins: int = Field(presets.LOSS_BINS, ge=1, description=(
        "Learned at once: labels are permuted within this many quantile bins of the reference-step loss."))
    min_cluster_tokens: int = Field(presets.MIN_CLUSTER_TOKENS, ge=2, description=(
        "Learned at once: clusters with at least this many well-fit tokens are tested."))
    alpha: float = Field(presets.ALPHA, gt=0, lt=1, description=(
        "Learned at once: tighter than random when the Benjamini–Hochberg q is below this."))
    permutation_seed: int = Field(0, description="Learned at once: seed of the permutations.")

    @field_validator("reference_step")
    @classmethod
    def _a_step_name(cls, value: str | None) -> str | None:
        if value is not None:
            step_number(value)  # ValueError naming the malformed step name
        return value

    def for_model(self, model: str) -> float:
        """The learned-at threshold for ``model``, nats (the family's when ``None``)."""
        if self.threshold_nats is not None:
            return float(self.threshold_nats)
        return preset_for(model).learned_threshold_nats


class _SigmoidFitSettings(SettingsResource):
    """The per-token sigmoid fit (:class:`quanta_core.learning.fit.FitSettings`): a token is well fit
    when none of the flag rules applies; results are the same for any ``workers`` / ``chunk_tokens``."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"workers", "chunk_tokens"})
    min_drop_nats: float = Field(FitSettings.min_drop_nats, ge=0, description=(
        "Flag 'no drop' when the fitted drop is below this, nats."))
    min_r2: float = Field(FitSettings.min_r2, le=1, description="Flag 'noisy' when the fit's R² is below this.")
    edge_fraction: float = Field(FitSettings.edge_fraction, ge=0, lt=0.5, description=(
        "Flag 'edge' when the midpoint is this close to either end (fraction of the range)."))
    min_points: int = Field(FitSettings.min_points, ge=4, description=(
        "Flag 'underdetermined' with fewer positions than this."))
    workers: Optional[int] = Field(None, ge=1, description=(
        "Execution: threads fitting chunks at once (default the CPU count, at most 4)."))
    chunk_tokens: int = Field(CHUNK_TOKENS, ge=1, description=(
        "Execution: tokens per chunk (working memory ≤ workers × 12 × chunk_tokens × positions × 8 bytes)."))

    def for_model(self, model: str | None = None) -> FitSettings:
        """The flag rule (the same for every model)."""
        return FitSettings(min_drop_nats=self.min_drop_nats, min_r2=self.min_r2, edge_fraction=self.edge_fraction,
                           min_points=self.min_points)

    def worker_count(self) -> int:
        return int(self.workers) if self.workers is not None else max(1, min(4, os.cpu_count() or 1))


class LearningTimeSettings(_SigmoidFitSettings):
    """Settings of ``token_learning_times``: the flag rule and execution fields of the fit."""

    min_step: int = Field(0, ge=0, description=(
        "Fit only checkpoints from this step on (0: all; e.g. 1000 to look past the first drop to the "
        "unigram loss)."))
    spectrum_bins: int = Field(SPECTRUM_BINS, ge=1, description="Bins of the learning-time spectrum.")


class ScaleCurveSettings(_SigmoidFitSettings):
    """Settings of ``token_scale_curves`` (each token's loss against parameter count across a family)."""

    embeddings: bool = Field(True, description=(
        "Whether N counts the input and output embeddings (True: the total, as Pythia's size names do)."))
