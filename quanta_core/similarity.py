"""QDG similarity: cosine similarity of per-token loss gradients (Michaud et al. 2023).

For each selected canonical index g (target token ``ids[pos]`` of document ``doc``) we take the
gradient of that single token's cross-entropy loss w.r.t. the *similarity parameters* (below),
L2-normalize it, and the matrix entry ``C[i, j]`` is the dot product of the normalized gradients.

Parameter set (:func:`similarity_parameters`): every parameter except the input embedding
(``model.get_input_embeddings()``), the output unembedding (``model.get_output_embeddings()``)
and the layer norms inside the decoder layers; the final layer norm is *included*, as in the
original script (its name filter ``'layernorm' not in name`` let ``final_layer_norm`` through),
unless ``exclude_final_layer_norm=True`` (what the paper's text says). Modules are found by
identity and type, not by name, so transformers ≥ 5's ``lm_head`` is excluded like ``embed_out``.

Methods of :func:`similarity_matrix`:

``exact`` (default)
    The context is cut right after the target (exact: the model is causal) and logits are taken
    only at the target position. Targets are sorted by context length and batched; per-sample
    gradients come from hooks on the Linear layers and the final layer norm (no parameter
    ``.grad`` is ever formed). Norms are accumulated in float64; Gram products are summed over
    column chunks in float64. Memory: the normalized gradients of a *resident block* of tokens
    stay in memory (float32, or float16 scaled by a power of two before the cast); when all S fit
    the budget every gradient is computed once; otherwise the tokens are cut into resident blocks
    as large as the budget allows and, for each block, the tokens after it are streamed past it in
    batches (block k is computed k + 1 times; ``gradient_computations`` counts them).
``projected``
    Each raw gradient is compressed with a seeded CountSketch (sparse random projection: each
    coordinate goes to one of ``projection_dim`` buckets with a random sign), then normalized.
    Every gradient is computed once; memory is ``S × projection_dim``. An approximation: the error
    of a cosine is about ``sqrt((1 + cos²) / projection_dim)``.
``reference``
    A faithful re-implementation of the original ``scripts/similarity_matrix_v1.py``: full
    document, full logits, one token at a time with ``.backward()``, float32 gradients normalized
    with ``F.normalize``, Gram in blocks of ``block_len`` = 250 where both blocks of every block
    pair are recomputed (``2.02`` gradients per token at S = 256, ``21.5`` at S = 10,000).
    For tests and benchmarks, never the default.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .canonical import CanonicalCorpus, index_to_doc_pos

METHODS = ("exact", "projected", "reference")
ORIGINAL_BLOCK_LEN = 250
DEFAULT_PROJECTION_DIM = 8192
_GRAM_CHUNK_ELEMENTS = 1 << 26  # elements converted / multiplied per Gram column chunk
_GRAM_MAX_COLUMNS = 1 << 13  # float32 partial sums over at most 8,192 products, then float64
_NORM_CHUNK = 1 << 16  # columns per float32 partial sum of squares
_FP16_TARGET_MAX = 2.0**14  # scaled rows have max |x| in [2^13, 2^14]: far from fp16 overflow

ProgressCallback = Callable[["Progress"], None]


@dataclass
class Progress:
    """Sent to the ``progress`` callback after every batch."""

    gradients_done: int
    gradients_total: int
    tokens_total: int
    block: int  # resident block being processed (0-based); 0 for projected/reference
    blocks: int
    seconds: float

    @property
    def rate(self) -> float:
        """Gradient computations per second so far."""
        return self.gradients_done / max(self.seconds, 1e-9)

    @property
    def eta_seconds(self) -> float:
        return (self.gradients_total - self.gradients_done) / max(self.rate, 1e-9)


@dataclass
class SimilarityResult:
    """``matrix``: float32 ``[S, S]`` cosine similarities in the order of ``indices`` (int64 ``[S]``
    canonical indices); symmetric, diagonal 1 (0 for a token whose gradient is exactly zero)."""

    matrix: np.ndarray
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

    @property
    def gradient_computations_per_token(self) -> float:
        return self.gradient_computations / max(len(self.indices), 1)

    def metadata(self) -> dict:
        """Plain-JSON summary (no arrays) for logs and Dagster metadata."""
        return {
            "method": self.method,
            "tokens": int(len(self.indices)),
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
        }


# ----------------------------------------------------------------------------------------------
# the parameter set


def _is_norm(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, nn.LayerNorm) or name.endswith("LayerNorm") or name.endswith("RMSNorm")


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "base_model", model)
    for attr in ("layers", "h", "blocks"):
        layers = getattr(base, attr, None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (no .layers ModuleList)")


def final_layer_norm(model: nn.Module) -> nn.Module | None:
    """The norm after the last decoder layer: the base model's norm module outside the layers."""
    base = getattr(model, "base_model", model)
    inside = {id(m) for m in _decoder_layers(model).modules()}
    norms = [m for m in base.modules() if _is_norm(m) and id(m) not in inside]
    if len(norms) > 1:
        raise ValueError(f"{type(model).__name__} has {len(norms)} norm modules outside its layers")
    return norms[0] if norms else None


def similarity_parameters(model: nn.Module, *, exclude_final_layer_norm: bool = False) -> list[tuple[str, nn.Parameter]]:
    """``(name, parameter)`` of the QDG parameter set, in ``named_parameters()`` order.

    Excluded, by module identity: the input embedding, the output embedding (unembedding; also
    when tied), every norm module inside the decoder layers, and the final norm when
    ``exclude_final_layer_norm``.
    """
    excluded: set[int] = set()
    for module in (model.get_input_embeddings(), model.get_output_embeddings()):
        if module is not None:
            excluded.update(id(p) for p in module.parameters())
    for module in _decoder_layers(model).modules():
        if _is_norm(module):
            excluded.update(id(p) for p in module.parameters())
    if exclude_final_layer_norm:
        final = final_layer_norm(model)
        if final is not None:
            excluded.update(id(p) for p in final.parameters())
    return [(n, p) for n, p in model.named_parameters() if id(p) not in excluded]


# ----------------------------------------------------------------------------------------------
# memory


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` or ``MemAvailable`` of /proc/meminfo."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


def default_memory_budget(device: torch.device) -> int:
    """85 % of free GPU memory, or 50 % of available RAM on a CPU (often a shared machine)."""
    return int(free_memory_bytes(device) * (0.85 if device.type == "cuda" else 0.5))


class _PeakMemory:
    """Peak memory during a computation: CUDA's max allocated, or the process's peak RSS (VmHWM,
    reset through /proc/self/clear_refs where allowed)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def read(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ----------------------------------------------------------------------------------------------
# targets


@dataclass
class _Targets:
    """Per selected token: document, position of the target, its context length (= position)."""

    docs: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, corpus: CanonicalCorpus, indices: np.ndarray) -> "_Targets":
        docs, positions = index_to_doc_pos(indices, corpus.starts)
        return cls(docs.astype(np.int64), positions.astype(np.int64))


def _batches(order: np.ndarray, lengths: np.ndarray, max_batch: int, batch_tokens: int,
             max_padding: float = 0.25) -> Iterator[np.ndarray]:
    """Consecutive runs of ``order`` (sorted by length, longest first) with ≤ ``max_batch`` items,
    ≤ ``batch_tokens`` padded tokens and padding ≤ ``max_padding`` of the real tokens."""
    start = 0
    while start < len(order):
        end = start + 1
        longest = real = int(lengths[order[start]])
        while end < len(order) and end - start < max_batch:
            n = int(lengths[order[end]])
            longest_next = max(longest, n)
            if longest_next * (end - start + 1) > min(batch_tokens, (1 + max_padding) * (real + n)):
                break
            longest, real = longest_next, real + n
            end += 1
        yield order[start:end]
        start = end


# ----------------------------------------------------------------------------------------------
# per-sample gradients through hooks


def last_layer_positionwise_modules(model: nn.Module) -> list[nn.Module]:
    """Modules of the last decoder layer that act on each position alone and whose outputs join
    the residual stream by a sum: GPT-NeoX's MLP and attention output projection (``[]`` for
    other architectures). Only the target position of the last layer reaches the loss, so these
    may run on the target rows alone (about an eighth of pythia-70m's matrix FLOPs saved)."""
    layer = _decoder_layers(model)[-1]
    if type(layer).__name__ != "GPTNeoXLayer":
        return []
    return [layer.mlp, layer.attention.dense]


class PerTokenGradients:
    """Batched per-sample gradients of single-token losses w.r.t. the similarity parameters.

    ``compute(contexts, targets, out)`` runs one forward pass over the right-padded contexts
    (token ids ``[N, T]``; context n holds ``lengths[n]`` tokens, the target follows them), takes
    the logits at each context's last position only, and one backward pass of the summed losses.
    Forward hooks keep each hooked module's input; tensor hooks on its output receive the
    gradient and write ``Σ_t grad_out[n, t] ⊗ input[n, t]`` (Linear) or the layer-norm weight/bias
    gradients for every sample n into ``out[n]`` (float32 ``[N, P]``, parameter order of
    :func:`similarity_parameters`). Samples don't interact (causal attention, right padding), so
    the summed loss gives every sample its own gradient. No parameter ``.grad`` is formed, and
    the backward pass stops at the first hooked modules' outputs (no embedding gradient). In the
    last layer the position-wise modules (:func:`last_layer_positionwise_modules`) run on the
    target rows only.
    """

    def __init__(self, model: nn.Module, params: list[tuple[str, nn.Parameter]]):
        self.model = model
        self.params = params
        self.device = params[0][1].device if params else next(model.parameters()).device
        self.num_parameters = sum(p.numel() for _, p in params)
        self.offsets: dict[int, tuple[int, int]] = {}
        offset = 0
        for _, p in params:
            self.offsets[id(p)] = (offset, p.numel())
            offset += p.numel()
        covered: dict[int, nn.Module] = {}
        self.modules: list[nn.Module] = []
        for module in model.modules():
            own = [p for p in module.parameters(recurse=False) if id(p) in self.offsets]
            if not own:
                continue
            if not (isinstance(module, nn.Linear) or (_is_norm(module) and isinstance(module, nn.LayerNorm))):
                names = [n for n, p in params if any(p is q for q in own)]
                raise NotImplementedError(
                    f"method 'exact'/'projected' computes per-sample gradients of nn.Linear and nn.LayerNorm "
                    f"parameters only; {type(module).__name__} holds {names} (use method='reference')"
                )
            for p in own:
                covered[id(p)] = module
            self.modules.append(module)
        missing = [n for n, p in params if id(p) not in covered]
        if missing:
            raise NotImplementedError(f"parameters not owned by a supported module: {missing}")
        self.target_row_modules = last_layer_positionwise_modules(model)
        self._out: torch.Tensor | None = None
        self._inputs: dict[int, torch.Tensor] = {}
        self._last: torch.Tensor | None = None  # [N] position of each sample's target row

    # -- hooks ---------------------------------------------------------------------------------
    def _forward_hook(self, module: nn.Module, args, output):
        if self._out is None:
            return None
        if not output.requires_grad:
            # a first hooked module (its input depends on no hooked parameter): its output becomes
            # a leaf, so the backward pass never runs below it
            output = output.detach().requires_grad_(True)
        self._inputs[id(module)] = args[0].detach()
        output.register_hook(lambda grad, m=module: self._grad_hook(m, grad))
        return output

    def _target_rows_hook(self, module: nn.Module, args):
        """Forward pre-hook on a position-wise module of the last layer: keep each sample's target
        row only (``[N, T, d]`` → ``[N, 1, d]``); the layer's residual sum broadcasts it."""
        if self._out is None:
            return None
        x = args[0]
        return (x[torch.arange(x.shape[0], device=x.device), self._last][:, None],) + tuple(args[1:])

    def _weight_view(self, param: nn.Parameter | None) -> torch.Tensor | None:
        """``out``'s columns of ``param`` as ``[N, *param.shape]`` (a strided view, no copy)."""
        if param is None or id(param) not in self.offsets:
            return None
        offset, numel = self.offsets[id(param)]
        return self._out[:, offset : offset + numel].unflatten(1, param.shape)

    def _grad_hook(self, module: nn.Module, grad_out: torch.Tensor) -> None:
        x = self._inputs.pop(id(module))
        n = grad_out.shape[0]
        go = grad_out.reshape(n, -1, grad_out.shape[-1]).float()
        x = x.reshape(n, -1, x.shape[-1]).float()
        if isinstance(module, nn.Linear):
            weight = self._weight_view(module.weight)
            if weight is not None:
                torch.bmm(go.transpose(1, 2), x, out=weight)  # Σ_t go[n, t] ⊗ x[n, t]: [N, out, in]
        else:  # LayerNorm
            weight = self._weight_view(module.weight)
            if weight is not None:
                xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
                torch.sum(go * xhat, 1, out=weight)
        bias = self._weight_view(module.bias)
        if bias is not None:
            torch.sum(go, 1, out=bias)

    # -- one batch -----------------------------------------------------------------------------
    def compute(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, out: torch.Tensor) -> None:
        """Write the per-sample gradients of the batch into ``out`` (float32 ``[N, P]``)."""
        model = self.model
        base = getattr(model, "base_model", model)
        handles = [m.register_forward_hook(self._forward_hook) for m in self.modules]
        handles += [m.register_forward_pre_hook(self._target_rows_hook) for m in self.target_row_modules]
        grad_flags = [(p, p.requires_grad) for p in model.parameters()]
        self._out, self._inputs, self._last = out, {}, lengths - 1
        try:
            for p, _ in grad_flags:
                p.requires_grad_(False)
            with torch.enable_grad():
                hidden = base(input_ids=ids, use_cache=False).last_hidden_state  # [N, T, d], final norm applied
                last = hidden[torch.arange(len(ids), device=ids.device), lengths - 1]  # [N, d]
                logits = model.get_output_embeddings()(last).float()  # [N, V]
                loss = F.cross_entropy(logits, targets, reduction="sum")
                loss.backward()
            if self._inputs:
                raise RuntimeError(f"{len(self._inputs)} hooked modules got no gradient")
        finally:
            self._out, self._inputs, self._last = None, {}, None
            for h in handles:
                h.remove()
            for p, flag in grad_flags:
                p.requires_grad_(flag)


def _collate(corpus: CanonicalCorpus, targets: _Targets, batch: np.ndarray, device: torch.device):
    lengths = targets.positions[batch]
    ids = np.zeros((len(batch), int(lengths.max())), dtype=np.int64)
    tgt = np.empty(len(batch), dtype=np.int64)
    for row, (d, pos) in enumerate(zip(targets.docs[batch], lengths)):
        doc = corpus.document(int(d))
        ids[row, :pos] = doc[:pos]
        tgt[row] = doc[pos]
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return as_t(ids), as_t(lengths.astype(np.int64)), as_t(tgt)


def _row_sq_norms(g: torch.Tensor) -> torch.Tensor:
    """Squared L2 norms of the rows of ``g`` (``[N, P]``), float64 ``[N]``: float32 (cascade)
    sums over column chunks of 65,536, accumulated in float64 (a plain float32 norm over 19M
    elements is off by ~1e-3 on CPU)."""
    sq = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    for a in range(0, g.shape[1], _NORM_CHUNK):
        sq += g[:, a : a + _NORM_CHUNK].float().square().sum(1).double()
    return sq


def _normalize_(g: torch.Tensor) -> int:
    """Normalize the rows of ``g`` in place (float64 norms; eps 1e-12 as F.normalize); returns the
    number of all-zero rows (left zero, as the original's F.normalize leaves them)."""
    norms = _row_sq_norms(g).sqrt()
    g.div_(norms.clamp_min(1e-12).to(g.dtype)[:, None])
    return int((norms == 0).sum())


def _to_fp16_(src: torch.Tensor, dst: torch.Tensor, scales: torch.Tensor) -> None:
    """Store normalized float32 rows ``src`` (overwritten: used as scratch) as float16 in ``dst``,
    scaled before the cast by a power of two so each row's largest element is in [2^13, 2^14]
    (small elements stay out of fp16's subnormal range). ``scales`` (float64) receives, per row,
    the norm of the *stored* row (taken again after rounding), so the Gram of the stored rows
    divided by these has an exact unit diagonal and only the rounding of directions remains."""
    maxabs = torch.zeros(src.shape[0], dtype=torch.float32, device=src.device)
    for a in range(0, src.shape[1], _NORM_CHUNK):
        maxabs = torch.maximum(maxabs, src[:, a : a + _NORM_CHUNK].abs().amax(1))
    scale = torch.exp2(torch.floor(torch.log2(_FP16_TARGET_MAX / maxabs.double().clamp_min(1e-30))))
    src.mul_(scale.float()[:, None])
    dst.copy_(src)
    scales.copy_(_row_sq_norms(dst).sqrt().clamp_min(1e-300))


class _Gram:
    """``A @ B.T`` for row-normalized A ``[m, P]``, B ``[n, P]`` (float32, or scaled float16 with
    per-row ``scale``: the result is divided by them), float64 ``[m, n]``. Products are float32
    matrix multiplications (float16 chunks are converted first: tensor-core float16 products
    accumulate with truncation, a bias of ~5e-5 on a unit diagonal at 8,192 products) over
    column chunks of ≤ 8,192, summed in float64."""

    def __call__(self, a: torch.Tensor, b: torch.Tensor, a_scale=None, b_scale=None) -> torch.Tensor:
        m, n, p = a.shape[0], b.shape[0], a.shape[1]
        out = torch.zeros(m, n, dtype=torch.float64, device=a.device)
        step = min(_GRAM_MAX_COLUMNS, max(256, _GRAM_CHUNK_ELEMENTS // max(m + n, 1)))
        same = a.data_ptr() == b.data_ptr() and a.shape == b.shape
        for c in range(0, p, step):
            x = a[:, c : c + step].float()
            y = x if same else b[:, c : c + step].float()
            out += torch.mm(x, y.T)
        if a_scale is not None:
            out /= a_scale[:, None]
        if b_scale is not None:
            out /= b_scale[None, :]
        return out


class _PrecisionGuard:
    """Full float32 matrix products on CUDA inside (no TF32, no reduced-precision fp16 sums)."""

    def __enter__(self):
        self.saved = (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        return self

    def __exit__(self, *exc):
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        ) = self.saved


# ----------------------------------------------------------------------------------------------
# planning


@dataclass
class MemoryPlan:
    """How ``exact`` uses its memory budget. Bytes count gradient storage only: the resident
    block, the staging block that streamed gradients are gathered in before each Gram product,
    and (float16) the float32 batch buffer; the activations of one batch, about
    ``batch_tokens × 80 × hidden × layers`` bytes, come on top."""

    tokens: int
    budget_bytes: int
    resident_tokens: int
    resident_dtype: str
    batch_size: int
    stream_tokens: int  # staging block; 0 when everything is resident
    blocks: int
    gradient_computations: int

    @property
    def gradient_computations_per_token(self) -> float:
        return self.gradient_computations / max(self.tokens, 1)


def plan_memory(
    num_tokens: int, num_parameters: int, budget_bytes: int, *, resident_dtype: str = "auto",
    max_batch: int = 32, max_stream: int = 128,
) -> MemoryPlan:
    """Resident block, staging block and batch sizes for ``num_tokens`` gradients of
    ``num_parameters`` elements within ``budget_bytes``.

    All resident in float32 when they fit (``auto``/``float32``); else float16 (``auto``/
    ``float16``: 2 bytes per element plus a float32 batch buffer) or float32 blocks. Streaming
    gets at most an eighth of the budget (≤ ``max_stream`` tokens staged). Block k of
    ``ceil(S / r)`` is computed ``k + 1`` times.
    """
    if resident_dtype not in ("auto", "float32", "float16"):
        raise ValueError(f"resident_dtype must be auto, float32 or float16, got {resident_dtype!r}")
    s, p = int(num_tokens), int(num_parameters)
    if resident_dtype in ("auto", "float32") and s * p * 4 <= budget_bytes:
        dtype, batch, stream, resident = "float32", max(1, min(max_batch, s)), 0, s
    else:
        dtype = "float32" if resident_dtype == "float32" else "float16"
        item = 4 if dtype == "float32" else 2
        buffer_item = 0 if dtype == "float32" else 4  # float32 gradients are computed straight into place
        batch = int(max(1, min(max_batch, s, budget_bytes // 16 // (p * max(buffer_item, item)))))
        stream = int(max(batch, min(max_stream, s, budget_bytes // 8 // (p * item))))
        rest = budget_bytes - batch * p * buffer_item
        if s * p * item <= rest:  # everything fits (float16 asked for): nothing streams
            stream, resident = 0, s
        else:
            resident = int(max(1, min(s, (rest - stream * p * item) // (p * item))))
    blocks = math.ceil(s / resident)
    computations = sum(min(resident, s - k * resident) * (k + 1) for k in range(blocks))
    return MemoryPlan(s, int(budget_bytes), resident, dtype, batch, stream if blocks > 1 else 0, blocks, computations)


def budget_for_resident(num_tokens: int, num_parameters: int, resident_tokens: int, resident_dtype: str, **kw) -> int:
    """The smallest budget whose :func:`plan_memory` keeps ``resident_tokens`` resident (tests, benchmarks)."""
    lo, hi = 1, (num_tokens + 512) * num_parameters * 8
    while lo < hi:
        mid = (lo + hi) // 2
        if plan_memory(num_tokens, num_parameters, mid, resident_dtype=resident_dtype, **kw).resident_tokens >= resident_tokens:
            hi = mid
        else:
            lo = mid + 1
    return lo


def original_gradient_computations(num_tokens: int, block_len: int = ORIGINAL_BLOCK_LEN) -> int:
    """Gradients the original script computes for S tokens: block i is computed once as the outer
    block and once for every block pair (j ≤ i) as the inner block: ``Σ_i |B_i| (i + 2)``."""
    blocks = [min(block_len, num_tokens - i) for i in range(0, num_tokens, block_len)]
    return sum(size * (i + 2) for i, size in enumerate(blocks))


# ----------------------------------------------------------------------------------------------
# methods


class _Reporter:
    def __init__(self, callback: ProgressCallback | None, total: int, tokens: int, blocks: int):
        self.callback, self.total, self.tokens, self.blocks = callback, total, tokens, blocks
        self.done, self.started = 0, time.perf_counter()

    def add(self, n: int, block: int = 0) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(Progress(self.done, self.total, self.tokens, block, self.blocks, time.perf_counter() - self.started))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _exact(model, corpus, targets, params, *, budget, resident_dtype, max_batch, batch_tokens, reporter_cb, result):
    engine = PerTokenGradients(model, params)
    device, p, s = engine.device, engine.num_parameters, len(targets.positions)
    plan = plan_memory(s, p, budget, resident_dtype=resident_dtype, max_batch=max_batch)
    order = np.argsort(-targets.positions, kind="stable")  # longest first: the last blocks are recomputed most
    lengths = targets.positions
    fp16 = plan.resident_dtype == "float16"
    store = torch.float16 if fp16 else torch.float32
    resident = torch.empty(plan.resident_tokens, p, dtype=store, device=device)
    staging = torch.empty(plan.stream_tokens, p, dtype=store, device=device)
    res_scale = torch.ones(plan.resident_tokens, dtype=torch.float64, device=device)
    stage_scale = torch.ones(plan.stream_tokens, dtype=torch.float64, device=device)
    buf = torch.empty(plan.batch_size, p, dtype=torch.float32, device=device) if fp16 else None
    gram = _Gram()
    matrix = np.zeros((s, s), dtype=np.float64)
    reporter = _Reporter(reporter_cb, plan.gradient_computations, s, plan.blocks)
    zero, t_grad, t_gram = 0, 0.0, 0.0

    def gradients(batch, store_rows, scale_rows) -> int:
        """Normalized gradients of ``batch`` into ``store_rows`` (float32, or scaled float16)."""
        nonlocal t_grad
        t0 = time.perf_counter()
        ids, lens, tgt = _collate(corpus, targets, batch, device)
        out = buf[: len(batch)] if fp16 else store_rows
        engine.compute(ids, lens, tgt, out)
        z = _normalize_(out)
        if fp16:
            _to_fp16_(out, store_rows, scale_rows)
        _sync(device)
        t_grad += time.perf_counter() - t0
        return z

    def product(rows, a, a_scale, cols, b, b_scale, symmetric=False):
        nonlocal t_gram
        t0 = time.perf_counter()
        c = gram(a, b, a_scale if fp16 else None, b_scale if fp16 else None)
        if symmetric:
            c = (c + c.T) / 2
        c = c.cpu().numpy()
        matrix[np.ix_(rows, cols)] = c
        matrix[np.ix_(cols, rows)] = c.T
        t_gram += time.perf_counter() - t0

    for k in range(plan.blocks):
        block = order[k * plan.resident_tokens : (k + 1) * plan.resident_tokens]
        r, row = len(block), 0
        for batch in _batches(block, lengths, plan.batch_size, batch_tokens):
            n = len(batch)
            zero += gradients(batch, resident[row : row + n], res_scale[row : row + n])
            row += n
            reporter.add(n, k)
        product(block, resident[:r], res_scale[:r], block, resident[:r], res_scale[:r], symmetric=True)
        # stream the tokens after this block past it, gathered in the staging block
        staged: list[np.ndarray] = []
        fill = 0
        rest = order[(k + 1) * plan.resident_tokens :]
        for batch in _batches(rest, lengths, plan.batch_size, batch_tokens):
            n = len(batch)
            if fill + n > plan.stream_tokens:
                product(block, resident[:r], res_scale[:r], np.concatenate(staged), staging[:fill], stage_scale[:fill])
                staged, fill = [], 0
            gradients(batch, staging[fill : fill + n], stage_scale[fill : fill + n])  # zero rows counted when resident
            staged.append(batch)
            fill += n
            reporter.add(n, k)
        if fill:
            product(block, resident[:r], res_scale[:r], np.concatenate(staged), staging[:fill], stage_scale[:fill])
    result.update(
        gradient_computations=reporter.done, resident_tokens=plan.resident_tokens, blocks=plan.blocks,
        resident_dtype=plan.resident_dtype, batch_size=plan.batch_size, zero_gradients=zero,
        gradient_seconds=t_grad, gram_seconds=t_gram, memory_budget_bytes=int(budget),
        extra={"stream_tokens": plan.stream_tokens},
    )
    assert reporter.done == plan.gradient_computations
    return matrix


def countsketch(num_parameters: int, dim: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded sparse projection: bucket (int64 ``[P]``, in [0, dim)) and sign (float32 ``[P]``,
    ±1) of every coordinate, generated on the CPU in blocks of 2^20 so it is device-independent."""
    gen = torch.Generator().manual_seed(int(seed))
    buckets, signs = [], []
    for a in range(0, num_parameters, 1 << 20):
        n = min(1 << 20, num_parameters - a)
        buckets.append(torch.randint(0, dim, (n,), generator=gen))
        signs.append(torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1)
    return torch.cat(buckets).to(device), torch.cat(signs).to(device)


def _projected(model, corpus, targets, params, *, dim, seed, max_batch, batch_tokens, reporter_cb, result):
    engine = PerTokenGradients(model, params)
    device, p, s = engine.device, engine.num_parameters, len(targets.positions)
    buckets, signs = countsketch(p, dim, seed, device)
    buf = torch.empty(min(max_batch, s), p, dtype=torch.float32, device=device)
    proj = torch.zeros(s, dim, dtype=torch.float64, device=device)
    order = np.argsort(-targets.positions, kind="stable")
    reporter = _Reporter(reporter_cb, s, s, 1)
    t_grad = 0.0
    step = 1 << 22
    for batch in _batches(order, targets.positions, buf.shape[0], batch_tokens):
        n = len(batch)
        t0 = time.perf_counter()
        ids, lens, tgt = _collate(corpus, targets, batch, device)
        engine.compute(ids, lens, tgt, buf[:n])
        part = torch.zeros(n, dim, dtype=torch.float64, device=device)
        for a in range(0, p, step):
            part.index_add_(1, buckets[a : a + step], (buf[:n, a : a + step] * signs[a : a + step]).double())
        proj[torch.from_numpy(batch).to(device)] = part
        _sync(device)
        t_grad += time.perf_counter() - t0
        reporter.add(n)
    t0 = time.perf_counter()
    norms = proj.norm(dim=1)
    zero = int((norms == 0).sum())
    proj /= norms.clamp_min(1e-12)[:, None]
    matrix = proj @ proj.T
    matrix = ((matrix + matrix.T) / 2).cpu().numpy()
    result.update(
        gradient_computations=s, projection_dim=dim, seed=seed, zero_gradients=zero, batch_size=buf.shape[0],
        gradient_seconds=t_grad, gram_seconds=time.perf_counter() - t0,
    )
    return matrix


def _reference(model, corpus, indices, params, *, block_len, reporter_cb, result):
    """The original script's loop (scripts/similarity_matrix_v1.py), with our parameter set."""
    device = params[0][1].device
    subset = {n for n, _ in params}
    starts = corpus.starts
    len_g = sum(p.numel() for _, p in params)
    token_idxs = [int(i) for i in indices]
    s = len(token_idxs)
    blocks = [token_idxs[i : min(len(token_idxs), i + block_len)] for i in range(0, len(token_idxs), block_len)]
    reporter = _Reporter(reporter_cb, original_gradient_computations(s, block_len), s, len(blocks))
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    t_grad = 0.0

    def get_flattened_gradient():
        return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if n in subset])

    def gradient(idx):
        nonlocal t_grad
        t0 = time.perf_counter()
        model.zero_grad()
        doc, pos = index_to_doc_pos(idx, starts)
        ids = torch.from_numpy(corpus.document(int(doc)).astype(np.int64))[None].to(device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        ls = F.cross_entropy(logits[0, :-1, :], ids[0, 1:], reduction="none")
        ls[int(pos) - 1].backward()
        g = get_flattened_gradient()
        _sync(device)
        t_grad += time.perf_counter() - t0
        return g

    C = torch.zeros((s, s), device=device)
    try:
        for p, _ in grad_flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            iouter = 0
            for j_index, iblock in enumerate(blocks):
                Gi = torch.zeros((len(iblock), len_g), device=device)
                for i, idx in enumerate(iblock):
                    Gi[i] = gradient(idx)
                    reporter.add(1, j_index)
                Gi = F.normalize(Gi, p=2, dim=1)
                jouter = sum(len(block) for block in blocks[:j_index])
                for jblock in blocks[j_index:]:
                    Gj = torch.zeros((len(jblock), len_g), device=device)
                    for j, idx in enumerate(jblock):
                        Gj[j] = gradient(idx)
                        reporter.add(1, j_index)
                    Gj = F.normalize(Gj, p=2, dim=1)
                    Cij = torch.matmul(Gi, Gj.T)
                    C[iouter : iouter + len(iblock), jouter : jouter + len(jblock)] = Cij
                    C[jouter : jouter + len(jblock), iouter : iouter + len(iblock)] = Cij.T
                    jouter += len(jblock)
                iouter += len(iblock)
    finally:
        model.zero_grad()
        for p, flag in grad_flags:
            p.requires_grad_(flag)
    result.update(gradient_computations=reporter.done, blocks=len(blocks), gradient_seconds=t_grad)
    return C.detach().cpu().numpy()


def similarity_matrix(
    model: nn.Module,
    corpus: CanonicalCorpus,
    indices: np.ndarray,
    *,
    method: str = "exact",
    memory_budget_bytes: int | None = None,
    exclude_final_layer_norm: bool = False,
    resident_dtype: str = "auto",
    projection_dim: int = DEFAULT_PROJECTION_DIM,
    seed: int = 0,
    max_batch: int | None = None,
    batch_tokens: int | None = None,
    block_len: int = ORIGINAL_BLOCK_LEN,
    progress: ProgressCallback | None = None,
) -> SimilarityResult:
    """QDG cosine-similarity matrix of the per-token gradients of ``indices`` (canonical, int64 ``[S]``).

    ``model``: a causal LM (GPT-NeoX) on its device, any dtype (float32 for exactness).
    ``method``: ``exact`` | ``projected`` | ``reference`` (see the module docstring).
    ``memory_budget_bytes`` (exact): bytes for stored gradients; default 85 % of free GPU memory
    or 50 % of available RAM. ``resident_dtype`` (exact): ``auto`` (float32 when all fit, else
    float16) | ``float32`` | ``float16``. ``projection_dim``, ``seed`` (projected).
    ``max_batch`` / ``batch_tokens``: targets and padded tokens per backward pass (defaults 32 /
    16,384 on CUDA, 8 / 4,096 on CPU). ``block_len`` (reference): the original's Gram block.
    ``progress``: called with a :class:`Progress` after each batch.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 1 or len(indices) == 0:
        raise ValueError(f"indices must be a non-empty 1-D array, got shape {indices.shape}")
    params = similarity_parameters(model, exclude_final_layer_norm=exclude_final_layer_norm)
    if not params:
        raise ValueError("the model has no parameters in the similarity set")
    device = params[0][1].device
    targets = _Targets.of(corpus, indices)
    max_batch = max_batch or (32 if device.type == "cuda" else 8)
    batch_tokens = batch_tokens or (16384 if device.type == "cuda" else 4096)
    result: dict = {}
    was_training = model.training
    model.eval()
    peak = _PeakMemory(device)
    started = time.perf_counter()
    try:
        with _PrecisionGuard():
            if method == "exact":
                budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget(device)
                matrix = _exact(model, corpus, targets, params, budget=budget, resident_dtype=resident_dtype,
                                max_batch=max_batch, batch_tokens=batch_tokens, reporter_cb=progress, result=result)
            elif method == "projected":
                if projection_dim < 1:
                    raise ValueError(f"projection_dim must be ≥ 1, got {projection_dim}")
                matrix = _projected(model, corpus, targets, params, dim=int(projection_dim), seed=seed,
                                    max_batch=max_batch, batch_tokens=batch_tokens, reporter_cb=progress, result=result)
            else:
                matrix = _reference(model, corpus, indices, params, block_len=block_len, reporter_cb=progress, result=result)
        _sync(device)
    finally:
        model.train(was_training)
    return SimilarityResult(
        matrix=matrix.astype(np.float32),
        indices=indices,
        method=method,
        seconds=time.perf_counter() - started,
        peak_memory_bytes=peak.read(),
        num_parameters=sum(p.numel() for _, p in params),
        parameter_names=[n for n, _ in params],
        exclude_final_layer_norm=exclude_final_layer_norm,
        device=str(device),
        **result,
    )
