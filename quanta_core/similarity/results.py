"""What the methods report: progress while they run, the typed outcome of one method
(:class:`MethodRun`), and the public :class:`SimilarityResult`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Progress:
    """Sent to the ``progress`` callback after every batch."""

    gradients_done: int
    gradients_total: int
    tokens_total: int
    block: int  # resident block being processed (0-based); 0 for projected/reference
    blocks: int
    seconds: float
    stage: str = "gradients"  # or "gram": then the *_done/_total fields count Gram tiles (sparse road)

    @property
    def rate(self) -> float:
        """Gradient computations per second so far."""
        return self.gradients_done / max(self.seconds, 1e-9)

    @property
    def eta_seconds(self) -> float:
        return (self.gradients_total - self.gradients_done) / max(self.rate, 1e-9)


ProgressCallback = Callable[[Progress], None]


class Reporter:
    """Counts gradient computations and sends :class:`Progress` to an optional callback."""

    def __init__(self, callback: ProgressCallback | None, total: int, tokens: int, blocks: int,
                 stage: str = "gradients"):
        self.callback, self.total, self.tokens, self.blocks, self.stage = callback, total, tokens, blocks, stage
        self.done, self.started = 0, time.perf_counter()

    def add(self, n: int, block: int = 0) -> None:
        self.done += n
        if self.callback is not None:
            elapsed = time.perf_counter() - self.started
            self.callback(Progress(self.done, self.total, self.tokens, block, self.blocks, elapsed, self.stage))

    def tiles(self, done: int, total: int) -> None:
        """Progress of a tiled Gram: ``done`` of ``total`` tiles."""
        self.total = total
        self.add(done - self.done)


@dataclass
class MethodRun:
    """What one method returns: ``matrix`` (float64 or float32 ``[S, S]``, order of the indices;
    with a sink, whatever its ``finish()`` returned) and its counts and timings (seconds); the
    fields a method does not use stay ``None``/0."""

    matrix: np.ndarray
    gradient_computations: int
    gradient_seconds: float = 0.0
    gram_seconds: float = 0.0
    zero_gradients: int = 0
    batch_size: int | None = None
    memory_budget_bytes: int | None = None
    resident_tokens: int | None = None
    blocks: int | None = None
    resident_dtype: str | None = None
    projection_dim: int | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    def fields(self) -> dict:
        """Every field but ``matrix``, by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "matrix"}


@dataclass
class SimilarityResult:
    """``matrix``: float32 ``[S, S]`` cosine similarities in the order of ``indices`` (int64 ``[S]``
    canonical indices); symmetric, diagonal 1 (0 for a token whose gradient is exactly zero).
    The sparse road (``neighbors`` k > 0) has ``matrix`` None and instead ``knn_indices`` int64
    ``[S, k]`` / ``knn_cosines`` float32 ``[S, k]`` (:mod:`quanta_core.similarity.knn`'s format)."""

    matrix: np.ndarray | None
    indices: np.ndarray
    method: str
    gradient_computations: int
    seconds: float
    peak_memory_bytes: int
    num_parameters: int  # elements in the similarity parameter set
    parameter_names: list[str]
    exclude_final_layer_norm: bool
    device: str
    memory_budget_bytes: int | None = None
    resident_tokens: int | None = None  # exact: tokens per resident block
    blocks: int | None = None  # exact: resident blocks; reference: Gram blocks
    resident_dtype: str | None = None
    batch_size: int | None = None
    projection_dim: int | None = None
    seed: int | None = None
    zero_gradients: int = 0
    gradient_seconds: float = 0.0
    gram_seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    knn_indices: np.ndarray | None = None
    knn_cosines: np.ndarray | None = None

    @property
    def neighbors(self) -> int:
        """k of the kNN result; 0 for the dense matrix."""
        return 0 if self.knn_indices is None else int(self.knn_indices.shape[1])

    @property
    def gradient_computations_per_token(self) -> float:
        return self.gradient_computations / max(len(self.indices), 1)

    def metadata(self) -> dict:
        """Plain-JSON summary (no arrays) for logs and Dagster metadata."""
        return {
            "method": self.method,
            "tokens": len(self.indices),
            "neighbors": self.neighbors,
            "gradient_computations": int(self.gradient_computations),
            "gradient_computations_per_token": round(self.gradient_computations_per_token, 3),
            "seconds": round(self.seconds, 3),
            "gradient_seconds": round(self.gradient_seconds, 3),
            "gram_seconds": round(self.gram_seconds, 3),
            "peak_memory_bytes": int(self.peak_memory_bytes),
            "num_parameters": int(self.num_parameters),
            "parameter_tensors": len(self.parameter_names),
            "exclude_final_layer_norm": self.exclude_final_layer_norm,
            "device": self.device,
            "memory_budget_bytes": self.memory_budget_bytes,
            "resident_tokens": self.resident_tokens,
            "blocks": self.blocks,
            "resident_dtype": self.resident_dtype,
            "batch_size": self.batch_size,
            "projection_dim": self.projection_dim,
            "seed": self.seed,
            "zero_gradients": self.zero_gradients,
            **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str))},
        }
