"""The last layer's attention for the target rows only.

Only each sample's target position of the last decoder layer reaches the loss (its attention
output projection and MLP already run on that row alone, see
:func:`.parameters.last_layer_positionwise_modules`), so its attention needs that one query per
sample: ``softmax(q_t·Kᵀ) V`` over the keys up to the target, instead of the whole causal
``T × T`` attention (a sixth of pythia-70m's attention work). Registered with transformers'
public ``AttentionInterface`` as ``quanta_target_rows``; every other layer runs the model's own
``sdpa``. Used by :class:`.gradients.PerTokenGradients` for GPT-NeoX models on ``sdpa``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NAME = "quanta_target_rows"


class TargetRows:
    """While active (``with TargetRows(model, layer_attention, last):``), the attention module
    ``layer_attention`` computes only the query rows ``last`` (int64 ``[N]``) and returns zeros
    elsewhere (rows nothing downstream reads)."""

    active: TargetRows | None = None

    def __init__(self, model: nn.Module, attention: nn.Module, last: torch.Tensor):
        self.model, self.attention, self.last = model, attention, last

    def __enter__(self):
        _register()
        self.previous = self.model.config._attn_implementation
        self.model.set_attn_implementation(NAME)
        TargetRows.active = self
        return self

    def __exit__(self, *exc):
        TargetRows.active = None
        self.model.set_attn_implementation(self.previous)


def _forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """``query``/``key``/``value`` ``[N, H, T, D]`` → ``[N, T, H, D]`` (transformers' layout)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    rows = TargetRows.active
    if rows is None or module is not rows.attention:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    n, _, t, _ = query.shape
    arange = torch.arange(n, device=query.device)
    q = query[arange, :, rows.last][:, :, None]  # [N, H, 1, D]
    visible = torch.arange(t, device=query.device)[None, :] <= rows.last[:, None]  # [N, T]: causal, no padding
    out = F.scaled_dot_product_attention(q, key, value, attn_mask=visible[:, None, None, :], scale=scaling)
    full = query.new_zeros(n, t, query.shape[1], query.shape[3])
    return full.index_put((arange, rows.last), out[:, :, 0]), None


def _register() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(NAME, _forward)  # idempotent
    # the masks sdpa gets (none for a plain causal batch: sdpa's is_causal fast path stays on)
    AttentionMaskInterface.register(NAME, AttentionMaskInterface()["sdpa"])
