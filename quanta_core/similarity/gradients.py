"""Per-token loss gradients, batched: the selected targets, their collation into padded contexts,
and the hooks that write every sample's gradient w.r.t. the similarity parameters."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quanta_core.corpus.canonical import CanonicalCorpus, index_to_doc_pos
from quanta_core.models.batching import length_batches
from quanta_core.similarity.attention import Attention
from quanta_core.similarity.onednn import OneDnnLinears, linear, outer_sums_
from quanta_core.similarity.parameters import decoder_layers, is_norm, last_layer_positionwise_modules

MAX_PADDING = 0.25  # no context in a batch padded by more than a quarter of the longest


@dataclass
class Targets:
    """Per selected token: document and position of the target (int64 ``[S]``); the position is
    also the context length (the tokens before the target)."""

    docs: np.ndarray
    positions: np.ndarray

    @classmethod
    def of(cls, corpus: CanonicalCorpus, indices: np.ndarray) -> Targets:
        docs, positions = index_to_doc_pos(indices, corpus.starts)
        return cls(docs.astype(np.int64), positions.astype(np.int64))

    def longest_first(self) -> np.ndarray:
        """Token order by context length, longest first (stable)."""
        return np.argsort(-self.positions, kind="stable")

    def batches(self, order: np.ndarray, max_batch: int, batch_tokens: int) -> list[np.ndarray]:
        """``order`` cut into batches (:func:`quanta_core.models.batching.length_batches`)."""
        return length_batches(order, self.positions, max_items=max_batch, max_tokens=batch_tokens,
                              max_padding=MAX_PADDING)


def collate(corpus: CanonicalCorpus, targets: Targets, batch: np.ndarray, device: torch.device):
    """``(ids [N, T], lengths [N], target ids [N])`` int64 on ``device``: right-padded contexts."""
    lengths = targets.positions[batch]
    ids = np.zeros((len(batch), int(lengths.max())), dtype=np.int64)
    tgt = np.empty(len(batch), dtype=np.int64)
    for row, (d, pos) in enumerate(zip(targets.docs[batch], lengths)):
        doc = corpus.document(int(d))
        ids[row, :pos] = doc[:pos]
        tgt[row] = doc[pos]
    return tuple(torch.from_numpy(a).to(device) for a in (ids, lengths.astype(np.int64), tgt))


def _hooked_modules(model: nn.Module, params: list[tuple[str, nn.Parameter]], offsets: dict) -> list[nn.Module]:
    """The modules owning the similarity parameters (nn.Linear / nn.LayerNorm only)."""
    covered: set[int] = set()
    modules: list[nn.Module] = []
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if id(p) in offsets]
        if not own:
            continue
        if not (isinstance(module, nn.Linear) or (is_norm(module) and isinstance(module, nn.LayerNorm))):
            names = [n for n, p in params if any(p is q for q in own)]
            raise NotImplementedError(
                f"method 'exact'/'projected' computes per-sample gradients of nn.Linear and nn.LayerNorm "
                f"parameters only; {type(module).__name__} holds {names} (use method='reference')"
            )
        covered.update(id(p) for p in own)
        modules.append(module)
    missing = [n for n, p in params if id(p) not in covered]
    if missing:
        raise NotImplementedError(f"parameters not owned by a supported module: {missing}")
    return modules


class _Unembedding(torch.autograd.Function):
    """Logits ``x @ W.T + b`` (float64 ``[N, V]`` from float32 ``x`` ``[N, d]``, ``W`` ``[V, d]``),
    whose backward pass sums ``dx = Σ_v grad[:, v] W[v]`` over the vocabulary in float64 with
    ``weight64`` (``W`` as float64): the float64 log-softmax gradient meets the weights without a
    float32 sum over 50,304 terms (MKL's float32 GEMM lost up to 1e-4 of ``dx`` here, see
    docs/similarity.md). ``W`` and ``b`` need no gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, weight64):
        ctx.save_for_backward(weight64)
        return linear(x, weight, bias).double()

    @staticmethod
    def backward(ctx, grad):
        (weight64,) = ctx.saved_tensors
        return (grad @ weight64).float(), None, None, None


def unembedding64(model: nn.Module) -> torch.Tensor | None:
    """The output embedding's weight as float64 ``[V, d]`` (``V·d·8`` bytes: 206 MB for pythia-70m),
    or None unless it is an ``nn.Linear`` with float32 weights."""
    head = model.get_output_embeddings()
    if isinstance(head, nn.Linear) and head.weight.dtype == torch.float32:
        return head.weight.detach().double()
    return None


def unembed(model: nn.Module, last: torch.Tensor, weight64: torch.Tensor | None) -> torch.Tensor:
    """The logits of the target rows ``last`` (float32 ``[N, d]``, final norm applied) as float64
    ``[N, V]``; through :class:`_Unembedding` when ``weight64`` (:func:`unembedding64`) is given."""
    head = model.get_output_embeddings()
    if weight64 is not None and last.dtype == torch.float32:
        return _Unembedding.apply(last, head.weight, head.bias, weight64)
    return head(last).double()


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
    last layer the position-wise modules (:func:`last_layer_positionwise_modules`) and the
    attention run on the target rows only, and on the CPU every layer's attention is float32 with an
    exactly normalized softmax instead of the fused kernel (:mod:`.attention`, for ``sdpa``
    models); the Linear products go through oneDNN on x86 CPUs (:mod:`.onednn`).
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
        self.modules = _hooked_modules(model, params, self.offsets)
        self.target_row_modules = last_layer_positionwise_modules(model)
        sdpa = getattr(getattr(model, "config", None), "_attn_implementation", None) == "sdpa"
        self.target_attention = decoder_layers(model)[-1].attention if self.target_row_modules and sdpa else None
        self.unembedding64 = unembedding64(model)  # kept for the run: a cast per batch cost 5 % (load 6)
        self.own_attention = sdpa and (self.target_attention is not None or self.device.type == "cpu")
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
                outer_sums_(go, x, weight)  # Σ_t go[n, t] ⊗ x[n, t]: [N, out, in]
        else:  # LayerNorm
            weight = self._weight_view(module.weight)
            if weight is not None:
                xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
                torch.sum(go * xhat, 1, out=weight)
        bias = self._weight_view(module.bias)
        if bias is not None:
            torch.sum(go, 1, out=bias)

    # -- one batch -----------------------------------------------------------------------------
    def _loss(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Σ_n 2^k_n · cross-entropy_n (float64): a graph through the hooks whose gradient is, for
        each sample n, its own loss gradient times a power of two (exact in floating point).

        Only the log-softmax of the ``[N, V]`` target rows and the unembedding's backward sum over
        the vocabulary (:func:`unembed`) are float64: for a well-predicted
        target (p ≈ 1) dL/dlogits = softmax − onehot is a difference of nearly equal numbers, off
        by ~6e-8 / (1 − p) relative in float32. ``2^k_n`` ≈ 1 / (1 − p_n) makes every sample's
        gradient of order one (no float32 underflow for losses near 0); cosines do not change."""
        model = self.model
        base = getattr(model, "base_model", model)
        hidden = base(input_ids=ids, use_cache=False).last_hidden_state  # [N, T, d], final norm applied
        last = hidden[torch.arange(len(ids), device=ids.device), lengths - 1]  # [N, d]
        logits = unembed(model, last, self.unembedding64)  # float64 [N, V]
        nll = -torch.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]  # [N] nats
        with torch.no_grad():
            k = torch.floor((-torch.log2(-torch.expm1(-nll))).clamp(0, 100))  # 1 − p = 1 − e^(−nll)
        return (nll * torch.exp2(k)).sum()

    def compute(self, ids: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, out: torch.Tensor) -> None:
        """Write the per-sample gradients of the batch into ``out`` (float32 ``[N, P]``)."""
        handles = [m.register_forward_hook(self._forward_hook) for m in self.modules]
        handles += [m.register_forward_pre_hook(self._target_rows_hook) for m in self.target_row_modules]
        grad_flags = [(p, p.requires_grad) for p in self.model.parameters()]
        self._out, self._inputs, self._last = out, {}, lengths - 1
        try:
            for p, _ in grad_flags:
                p.requires_grad_(False)
            attention = nullcontext()
            if self.own_attention:
                attention = Attention(self.model, self.target_attention, lengths - 1)
            with torch.enable_grad(), OneDnnLinears(self.model.modules()), attention:
                self._loss(ids, lengths, targets).backward()
            if self._inputs:
                raise RuntimeError(f"{len(self._inputs)} hooked modules got no gradient")
        finally:
            self._out, self._inputs, self._last = None, {}, None
            for h in handles:
                h.remove()
            for p, flag in grad_flags:
                p.requires_grad_(flag)
