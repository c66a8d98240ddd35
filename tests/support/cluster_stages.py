"""Stages for the cluster tests: real torch work on a tiny GPT-NeoX, no Dagster import.

``tiny_losses``: per-token cross-entropy (nats) of a tiny random GPT-NeoX (seeded by the partition)
on the token ids the ``tiny_tokens`` asset wrote; saved atomically as ``.npy`` float32 [B, T-1].
Test knobs in ``params``: ``sleep_s`` (sleep first, up to that many seconds, logging each second:
for terminate/kill/time-limit tests), ``hold_while`` (a path: stop sleeping once it is gone),
``fail`` (raise ``ValueError``).
"""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np


def tiny_model(seed: int):
    """A tiny random GPT-NeoX (vocab 512, hidden 32, 2 layers), eval mode, float32."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=512, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=64, rotary_pct=0.25)
    return GPTNeoXForCausalLM(config).eval()


def tiny_losses(params: dict, log) -> dict:
    import torch

    from quanta_core.atomic import save_npy

    hold = params.get("hold_while")
    for second in range(int(params.get("sleep_s", 0))):
        if hold and not os.path.exists(hold):
            break
        log(f"sleeping {second + 1}/{params['sleep_s']} s")
        time.sleep(1)
    if params.get("fail"):
        raise ValueError(f"tiny_losses was asked to fail (seed {params['seed']})")
    torch.set_num_threads(1)  # the same reduction order in every process
    ids = torch.from_numpy(np.load(params["tokens"], allow_pickle=False))
    with torch.no_grad():
        logits = tiny_model(int(params["seed"]))(ids).logits[:, :-1]
        losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    losses = losses.numpy().astype(np.float32)
    save_npy(params["out"], losses)
    log(f"wrote {params['out']}: {losses.shape}")
    return {
        "path": {"raw_value": params["out"], "type": "path"},
        "mean_loss_nats": float(losses.mean()),
        "sha256": hashlib.sha256(losses.tobytes()).hexdigest(),
        "shape": {"raw_value": list(losses.shape), "type": "json"},
    }
