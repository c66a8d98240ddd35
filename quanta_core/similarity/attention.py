"""The attention of the gradient passes: float32 with an exactly normalized softmax, and the last
layer's attention for the target rows only.

**Why not the CPU's fused kernel.** PyTorch's CPU flash-attention kernel (``sdpa``'s choice for
float32 on the CPU) keeps each query row's log-sum-exp ``lse = m + log Σ exp(s − m)`` in float32
and, in the backward pass, recomputes the probabilities as ``exp(s − lse)``. When attention scores
are large (hundreds to thousands: models trained briefly at a high learning rate, saturated heads)
``lse`` is rounded to ``ulp(|lse|)`` (1.2e-4 at 2,048), so each row's recomputed probabilities sum
to ``1 ± 1e-4`` and every gradient below inherits a per-row error of that size (measured: 6e-5 of a
normalized gradient in the first layer's QKV block, against 5e-6 with the softmax below; see
docs/similarity.md, "Accuracy on unseen models"). :func:`causal_attention` computes
``softmax(q·Kᵀ·scale) V`` with ``torch.softmax`` (``exp(s − max)``: the largest entry is exactly
``exp(0)``), in chunks of :data:`QUERY_ROWS` query rows, each against the keys it can see (the
causal upper triangle is skipped) — slower than the fused kernel on long contexts (1.6× at 1,000
tokens), so :func:`attention` runs the fused kernel first and keeps it where its ``lse`` is exact
enough (every row's ``|lse| ≤`` :data:`LSE_LIMIT`: a per-row error ≤ 1e-6), and recomputes a
batch's layer with :func:`causal_attention` only where it is not.

**Target rows.** Only each sample's target position of the last decoder layer reaches the loss
(its attention output projection and MLP already run on that row alone, see
:func:`.parameters.last_layer_positionwise_modules`), so its attention needs one query per sample:
``softmax(q_t·Kᵀ) V`` over the keys up to the target.

Both are registered with transformers' public ``AttentionInterface`` as ``quanta_attention``,
active inside :class:`Attention`. On CUDA the other layers keep the model's own ``sdpa``.
"""

from __future__ import annotations

import torch
from torch import nn

NAME = "quanta_attention"
QUERY_ROWS = 128  # query rows per chunk of causal_attention
LSE_LIMIT = 16.0  # the fused kernel is kept while every |log-sum-exp| ≤ 16 (ulp(16) = 1.9e-6)
_FUSED = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FUSED_BACKWARD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


class Attention:
    """While active (``with Attention(model, target_attention, last):``), the model's attention is
    :func:`causal_attention` on the CPU (``sdpa`` on CUDA), and the attention module
    ``target_attention`` (or None) computes only the query rows ``last`` (int64 ``[N]``) and returns
    zeros elsewhere (rows nothing downstream reads)."""

    active: Attention | None = None

    def __init__(self, model: nn.Module, target_attention: nn.Module | None, last: torch.Tensor):
        self.model, self.attention, self.last = model, target_attention, last

    def __enter__(self):
        _register()
        self.previous = self.model.config._attn_implementation
        self.model.set_attn_implementation(NAME)
        Attention.active = self
        return self

    def __exit__(self, *exc):
        Attention.active = None
        self.model.set_attn_implementation(self.previous)


def causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                     scaling: float, rows: int = QUERY_ROWS) -> torch.Tensor:
    """``softmax(q·Kᵀ·scaling + mask) V`` for ``query`` ``[N, H, T, D]``, ``key``/``value``
    ``[N, H, T, D]`` → ``[N, H, T, D]``. ``mask``: None (causal) or a boolean (True = visible) or
    additive float mask ``[N or 1, 1 or H, T, T]`` (causal already included)."""
    t = query.shape[2]
    outs = []
    for a in range(0, t, rows):
        b = min(t, a + rows)
        scores = (query[:, :, a:b] @ key[:, :, :b].transpose(-1, -2)) * scaling  # [N, H, b − a, b]
        if mask is None:
            visible = torch.ones(b - a, b, dtype=torch.bool, device=query.device).tril(a)
            scores = scores.masked_fill(~visible, float("-inf"))
        elif mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask[..., a:b, :b], float("-inf"))
        else:
            scores = scores + mask[..., a:b, :b]
        outs.append(torch.softmax(scores, -1) @ value[:, :, :b])
    return torch.cat(outs, 2)


class _Fused(torch.autograd.Function):
    """PyTorch's fused causal CPU attention (the kernel ``sdpa`` picks), returning its float32
    log-sum-exp ``[N, H, T]`` too; the backward pass is the kernel's own."""

    @staticmethod
    def forward(ctx, query, key, value, scaling):
        out, lse = _FUSED(query, key, value, 0.0, True, scale=scaling)
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.scaling = scaling
        ctx.mark_non_differentiable(lse)
        return out, lse

    @staticmethod
    def backward(ctx, grad, _):
        query, key, value, out, lse = ctx.saved_tensors
        dq, dk, dv = _FUSED_BACKWARD(grad.contiguous(), query, key, value, out, lse, 0.0, True, scale=ctx.scaling)
        return dq, dk, dv, None


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float,
              limit: float = LSE_LIMIT) -> torch.Tensor:
    """Causal attention ``[N, H, T, D]`` → ``[N, H, T, D]`` (no mask but causality): the fused
    kernel where every row's ``|lse| ≤ limit``, else :func:`causal_attention` (see the module
    docstring); :func:`causal_attention` alone where the fused kernel's ops are missing."""
    if _FUSED is not None and _FUSED_BACKWARD is not None and query.dtype == torch.float32:
        out, lse = _Fused.apply(query, key, value, scaling)
        if bool(lse.abs().max() <= limit):
            return out
    return causal_attention(query, key, value, None, scaling)


def target_row_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, last: torch.Tensor,
                         scaling: float) -> torch.Tensor:
    """Query rows ``last`` (int64 ``[N]``) of the causal attention: ``[N, H, T, D]`` inputs →
    ``[N, H, D]``, over the keys ``0 … last[n]`` of each sample (right padding is never seen)."""
    n, _, t, _ = query.shape
    q = query[torch.arange(n, device=query.device), :, last][:, :, None]  # [N, H, 1, D]
    scores = (q @ key.transpose(-1, -2)) * scaling  # [N, H, 1, T]
    visible = torch.arange(t, device=query.device)[None, :] <= last[:, None]  # [N, T]
    scores = scores.masked_fill(~visible[:, None, None, :], float("-inf"))
    return (torch.softmax(scores, -1) @ value)[:, :, 0]


def _forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """``query``/``key``/``value`` ``[N, H, T, D]`` → ``[N, T, H, D]`` (transformers' layout)."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    active = Attention.active
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    groups = getattr(module, "num_key_value_groups", 1)
    if active is not None and module is active.attention and attention_mask is None:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
        n, t = query.shape[0], query.shape[2]
        arange = torch.arange(n, device=query.device)
        full = query.new_zeros(n, t, query.shape[1], value.shape[3])
        return full.index_put((arange, active.last), target_row_attention(query, key, value, active.last,
                                                                           scaling)), None
    plain = query.shape[2] == key.shape[2] and kwargs.get("position_bias") is None and kwargs.get("softcap") is None
    if active is None or query.device.type != "cpu" or dropout or not plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    if attention_mask is None:
        out = attention(query, key, value, scaling)
    else:
        out = causal_attention(query, key, value, attention_mask, scaling)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(NAME, _forward)  # idempotent
    # the masks sdpa gets (none for a plain causal batch: the chunks apply causality themselves)
    AttentionMaskInterface.register(NAME, AttentionMaskInterface()["sdpa"])
