"""The options of the similarity stage, one frozen JSON-able object: how the gradient cosines of
the selected tokens are computed (:func:`quanta_core.similarity.similarity_matrix` takes it whole;
the stage sends it as a dict). Defaults: :mod:`quanta_core.presets`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from quanta_core.presets import PROJECTION_DIM
from quanta_core.similarity.gram import MODES as GRAM_MODES
from quanta_core.similarity.reference import ORIGINAL_BLOCK_LEN

METHODS = ("exact", "projected", "reference")
RESIDENT_DTYPES = ("auto", "float32", "float16")


@dataclass(frozen=True)
class SimilarityOptions:
    """How the similarity is computed.

    ``method``: ``exact`` | ``projected`` | ``reference`` (the original's loop).
    ``memory_budget_bytes``: bytes for stored gradients (exact) and the kNN parts (None: 85 % of
    free GPU memory or 50 % of available RAM). ``exclude_final_layer_norm``: False = the
    original's parameter set, True = the paper's text. ``resident_dtype`` (exact): ``auto`` |
    ``float32`` | ``float16``. ``projection`` (``countsketch`` | ``sjlt`` | ``sjlt-<s>``),
    ``projection_dim`` (≤ 2^18) and ``seed``: the sketch of ``projected``. ``gram_mode``: ``ieee``
    | ``3xtf32`` (CUDA tensor cores) | ``3xtf32-emulated``. ``neighbors``: 0 = the dense
    ``[S, S]`` matrix; k > 0 = each token's k most similar tokens only. ``absolute_gradients``:
    the cosines of the element-wise absolute gradients, the paper's second matrix ``C_abs =
    |G||G|ᵀ`` (exact, projected). ``projected_dtype``
    (projected with neighbors): stored rows ``auto`` | ``float32`` | ``float16``. Execution only:
    ``max_batch`` / ``batch_tokens`` (targets and padded tokens per backward pass; None: 32 /
    16,384 on CUDA, 8 / 4,096 on CPU), ``block_len`` (reference: the original's Gram block).
    """

    method: str = "exact"
    memory_budget_bytes: int | None = None
    exclude_final_layer_norm: bool = False
    resident_dtype: str = "auto"
    projection_dim: int = PROJECTION_DIM
    projection: str = "countsketch"
    seed: int = 0
    gram_mode: str = "ieee"
    neighbors: int = 0
    absolute_gradients: bool = False
    projected_dtype: str = "auto"
    max_batch: int | None = None
    batch_tokens: int | None = None
    block_len: int = ORIGINAL_BLOCK_LEN

    def __post_init__(self) -> None:
        for name, choices in (("method", METHODS), ("resident_dtype", RESIDENT_DTYPES),
                              ("projected_dtype", RESIDENT_DTYPES), ("gram_mode", GRAM_MODES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")

    def as_dict(self) -> dict:
        """A JSON-able dict (the stage parameters)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SimilarityOptions:
        return cls(**values)
