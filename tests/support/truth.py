"""The float64 truth for accuracy checks: the same model and tokens run wholly in float64 with plain
autograd, one token at a time over its full document; and a small GPT-NeoX overfit on a few
repeated documents, the low-loss regime QDG selects (losses of ~1e-3 nats), where float32 loses
accuracy at the top of the backward pass."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from quanta_core.corpus.canonical import CanonicalCorpus, index_to_doc_pos
from quanta_core.similarity.parameters import similarity_parameters
from quanta_core.similarity.projected import countsketch, sketch


def float64_gradients(model: nn.Module, corpus: CanonicalCorpus, indices: np.ndarray, *,
                      exclude_final_layer_norm: bool = False) -> torch.Tensor:
    """Raw per-token loss gradients (float64 ``[S, P]``, CPU) of a float64 copy of ``model``:
    full document, full logits, ``.backward()`` of one token's cross-entropy at a time. Attention:
    ``sdpa`` restricted to its math kernel, float64 throughout (transformers' ``eager`` GPT-NeoX
    attention takes its softmax in float32 even in a float64 model: no oracle)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m64 = copy.deepcopy(model).to("cpu", torch.float64).eval()
    m64.set_attn_implementation("sdpa")
    params = similarity_parameters(m64, exclude_final_layer_norm=exclude_final_layer_norm)
    docs, positions = index_to_doc_pos(np.asarray(indices, dtype=np.int64), corpus.starts)
    rows = []
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        for doc, pos in zip(docs, positions):
            ids = torch.from_numpy(corpus.document(int(doc)).astype(np.int64))[None]
            m64.zero_grad()
            logits = m64(input_ids=ids).logits[0]
            F.cross_entropy(logits[pos - 1 : pos], ids[0, pos : pos + 1]).backward()
            rows.append(torch.cat([p.grad.flatten() for _, p in params]))
    return torch.stack(rows)


def cosines(g: torch.Tensor) -> np.ndarray:
    """float64 ``[S, S]`` cosines of the rows of ``g``."""
    g = g.double()
    g = g / g.norm(dim=1, keepdim=True)
    return (g @ g.T).numpy()


def float64_truth(model: nn.Module, corpus: CanonicalCorpus, indices: np.ndarray, *,
                  exclude_final_layer_norm: bool = False, projection_dim: int | None = None,
                  seed: int = 0) -> np.ndarray:
    """The float64 truth of :func:`quanta_core.similarity.similarity_matrix` (float64 ``[S, S]``):
    of ``exact`` (``projection_dim=None``), or of ``projected`` (the same CountSketch applied to
    the float64 gradients)."""
    g = float64_gradients(model, corpus, indices, exclude_final_layer_norm=exclude_final_layer_norm)
    if projection_dim is not None:
        buckets, signs = countsketch(g.shape[1], projection_dim, seed, g.device)
        g = sketch(g, buckets, signs.double(), projection_dim)
    return cosines(g)


def low_loss_gptneox(*, vocab_size: int = 512, hidden: int = 64, layers: int = 2, documents: int = 4,
                     length: int = 64, steps: int = 60, lr: float = 1.5e-2, seed: int = 0):
    """A small GPT-NeoX (Pythia's architecture) trained with Adam on ``documents`` random
    documents of ``length`` tokens until it predicts them with losses of ~1e-3 nats.

    Returns ``(model, corpus, losses)``: the float32 model in eval mode, the documents as a
    :class:`CanonicalCorpus`, and each predictable token's loss (float64 nats, canonical order).
    About a second on one CPU thread with the defaults."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=length,
                           rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False)
    model = GPTNeoXForCausalLM(config)
    ids = torch.from_numpy(np.random.default_rng(seed).integers(0, vocab_size, (documents, length)))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].double()
    losses = F.cross_entropy(logits.reshape(-1, vocab_size), ids[:, 1:].reshape(-1), reduction="none").numpy()
    lengths = np.full(documents, length, dtype=np.int64)
    corpus = CanonicalCorpus(ids.numpy().reshape(-1).astype(np.uint16), np.concatenate([[0], np.cumsum(lengths)]),
                             pd.DataFrame({"num_tokens": lengths}))
    return model, corpus, losses
