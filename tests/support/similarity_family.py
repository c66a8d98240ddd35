"""A family of small GPT-NeoX models for the accuracy tests of QDG similarity, and a per-block
diagnostic of the per-token gradients against float64 autograd.

The family (:data:`FAMILY`): widths 32–96, 1–3 layers, rotary fractions 0.25–1, tied and untied
embeddings, the full 50,304-token vocabulary (one member 4,096), trained with Adam for a few dozen
steps at high learning rates (1e-2 … 1e-1) on four short documents (48 or 64 tokens) over a few dozen distinct token
ids (a Zipf mix, half of the documents periodic): large logits (max |logit| 15–40), saturated
attention heads (scores in the hundreds or thousands) and a few tokens seen often, as in a briefly
trained model at a high learning rate. :func:`selected` picks tokens with losses spread log-evenly
over 1e-4 … 1 nat. Written independently of ``quanta_core.similarity`` except for
:func:`~quanta_core.similarity.similarity_parameters` (which parameters) and the engine under test.

``python tests/core/similarity_family.py`` prints, per member, the max |Δcos| of ``exact`` and the
per-block errors (see :func:`block_errors`), with the model's attention kernel (before) and ours.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from quanta_core.corpus.canonical import CanonicalCorpus, index_to_doc_pos
from quanta_core.similarity import similarity_parameters
from quanta_core.similarity.memory import ReusedHeap

from support.truth import float64_gradients  # the oracle: float64 autograd, sdpa math kernel


@dataclass(frozen=True)
class Member:
    """One model of the family: GPT-NeoX shape and its training (Adam, ``steps`` at ``lr``)."""

    name: str
    hidden: int
    layers: int
    heads: int
    rotary: float
    tied: bool
    lr: float
    steps: int
    vocab: int = 50304
    parallel_residual: bool = True
    length: int = 48  # tokens per document, 4 documents
    distinct: int = 48  # distinct token ids in the documents
    seed: int = 0


FAMILY = (
    Member("narrow-2L-untied-hot", hidden=32, layers=2, heads=4, rotary=0.25, tied=False, lr=1e-1, steps=60,
           length=64),
    Member("narrow-2L-tied", hidden=32, layers=2, heads=4, rotary=0.25, tied=True, lr=5e-2, steps=40, seed=1),
    Member("wide-1L-untied", hidden=96, layers=1, heads=4, rotary=0.5, tied=False, lr=3e-2, steps=30, seed=2),
    Member("deep-3L-full-rotary", hidden=48, layers=3, heads=4, rotary=1.0, tied=False, lr=3e-2, steps=40, seed=3),
    Member("light-2L-sequential", hidden=64, layers=2, heads=8, rotary=0.25, tied=False, lr=1e-2, steps=15,
           parallel_residual=False, seed=4),
    Member("small-vocab-2L-tied", hidden=64, layers=2, heads=4, rotary=0.5, tied=True, lr=2e-2, steps=60,
           vocab=4096, length=64, seed=5),
)

# Hotter models whose float32 floor (:func:`float32_gradients`: a plain float32 computation) is itself
# above 1e-5: there the float32 QKV product's accumulation error (before its rounding) moves the
# saturated attention scores; no method with float32 activations gets closer than that floor.
BEYOND_FLOAT32 = (
    Member("deep-3L-full-rotary-hotter", hidden=48, layers=3, heads=4, rotary=1.0, tied=False, lr=5e-2, steps=40,
           seed=3),
    Member("small-vocab-2L-tied-hotter", hidden=64, layers=2, heads=4, rotary=0.5, tied=True, lr=5e-2, steps=60,
           vocab=4096, length=64, seed=5),
)


def build(member: Member):
    """``(model, corpus, losses)``: the trained float32 model (eval mode, ``sdpa`` attention), its
    four documents as a :class:`CanonicalCorpus`, and every predictable token's loss (float64 nats,
    canonical order, from a float64 copy of the model)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    m = member
    torch.manual_seed(m.seed)
    config = GPTNeoXConfig(vocab_size=m.vocab, hidden_size=m.hidden, num_hidden_layers=m.layers,
                           num_attention_heads=m.heads, intermediate_size=4 * m.hidden,
                           max_position_embeddings=m.length, rotary_pct=m.rotary,
                           use_parallel_residual=m.parallel_residual, tie_word_embeddings=m.tied,
                           attn_implementation="sdpa")
    model = GPTNeoXForCausalLM(config)
    rng = np.random.default_rng(m.seed)
    pool = rng.choice(m.vocab, m.distinct, replace=False)
    zipf = 1.0 / np.arange(1, m.distinct + 1)
    ids = pool[rng.choice(m.distinct, (4, m.length), p=zipf / zipf.sum())]
    for d in range(2):  # periodic documents: predictable after the first period (the low losses)
        ids[d] = np.resize(ids[d, : 5 + 2 * d], m.length)
    ids = torch.from_numpy(ids)
    opt = torch.optim.Adam(model.parameters(), lr=m.lr, fused=True)
    with torch.enable_grad(), ReusedHeap():  # no fresh pages for the [4, T, V] logits at every step
        for _ in range(m.steps):
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = copy.deepcopy(model).double()(input_ids=ids).logits[:, :-1]
    losses = F.cross_entropy(logits.reshape(-1, m.vocab), ids[:, 1:].reshape(-1), reduction="none").numpy()
    lengths = np.full(4, m.length, dtype=np.int64)
    corpus = CanonicalCorpus(ids.numpy().reshape(-1).astype(np.uint16), np.concatenate([[0], np.cumsum(lengths)]),
                             pd.DataFrame({"num_tokens": lengths}))
    return model, corpus, losses


def selected(losses: np.ndarray, count: int = 14, low: float = 1e-4, high: float = 1.0) -> np.ndarray:
    """Canonical indices (int64, ascending, distinct) of the tokens whose losses are nearest to
    ``count`` log-even targets in ``[low, high]`` nats."""
    picks: list[int] = []
    for target in np.geomspace(low, high, count):
        order = np.argsort(np.abs(np.log(losses) - np.log(target)))
        picks.append(int(next(i for i in order if i not in picks)))
    return np.sort(np.array(picks, dtype=np.int64))


def float32_gradients(model, corpus: CanonicalCorpus, indices: np.ndarray) -> torch.Tensor:
    """The float32 floor: per-token gradients (as float64 ``[S, P]``) of the float32 model itself,
    plain autograd one token at a time, with an exactly normalized attention softmax (``sdpa``'s
    math kernel) and the unembedding and cross-entropy in float64 — what float32 weights and
    activations allow, independent of the engine."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    params = similarity_parameters(model)
    head = model.get_output_embeddings().weight.double()
    docs, positions = index_to_doc_pos(np.asarray(indices, dtype=np.int64), corpus.starts)
    rows = []
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for _, p in params:
            p.requires_grad_(True)
        with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
            for doc, pos in zip(docs, positions):
                ids = torch.from_numpy(corpus.document(int(doc)).astype(np.int64))[None, : int(pos) + 1]
                model.zero_grad()
                hidden = model.base_model(input_ids=ids[:, :-1]).last_hidden_state[0, -1]
                F.cross_entropy((hidden.double() @ head.T)[None], ids[0, -1:]).backward()
                rows.append(torch.cat([p.grad.double().flatten() for _, p in params]))
    finally:
        model.zero_grad()
        for p, flag in flags:
            p.requires_grad_(flag)
    return torch.stack(rows)


def unit_rows(g: torch.Tensor) -> torch.Tensor:
    """Rows of ``g`` divided by their L2 norms, float64."""
    g = g.double()
    return g / g.norm(dim=1, keepdim=True)


def block_errors(model, corpus: CanonicalCorpus, indices: np.ndarray, g64: torch.Tensor, *,
                 fused_attention: bool = False) -> dict[str, float]:
    """Per parameter block: the largest (over tokens) L2 norm of that block's part of
    ``u − u64``, where ``u`` and ``u64`` are the whole per-token gradients (ours: the ``exact``
    engine, batched as ``exact`` batches them; the oracle ``g64``) each normalized to unit length.
    A cosine moves by at most ``|Δu_i| + |Δu_j|``, so these are the blocks' shares of the error.
    ``fused_attention=True`` keeps the model's ``sdpa`` kernel (the engine before its own attention)."""
    from quanta_core.similarity.gradients import PerTokenGradients

    params = similarity_parameters(model)
    engine = PerTokenGradients(model, params)
    with _fused_attention(fused_attention):
        ours = _engine_gradients(engine, corpus, indices)
    delta = unit_rows(ours) - unit_rows(g64)
    errors, offset = {}, 0
    for name, p in params:
        errors[name] = float(delta[:, offset : offset + p.numel()].norm(dim=1).max())
        offset += p.numel()
    return errors


class _fused_attention:
    """Inside (when ``on``): the engine's attention through ``F.scaled_dot_product_attention``, the
    model's fused CPU kernel, as before :mod:`quanta_core.similarity.attention` had its own."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        from quanta_core.similarity import attention

        self.saved = attention.attention, attention.causal_attention, attention.target_row_attention
        if self.on:
            attention.attention = lambda query, key, value, scaling: _sdpa_causal(query, key, value, None, scaling)
            attention.causal_attention = _sdpa_causal
            attention.target_row_attention = _sdpa_target_rows

    def __exit__(self, *exc):
        from quanta_core.similarity import attention

        attention.attention, attention.causal_attention, attention.target_row_attention = self.saved


def _sdpa_causal(query, key, value, mask, scaling):
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=mask is None, scale=scaling)


def _sdpa_target_rows(query, key, value, last, scaling):
    n, _, t, _ = query.shape
    q = query[torch.arange(n), :, last][:, :, None]
    visible = torch.arange(t)[None, :] <= last[:, None]
    return F.scaled_dot_product_attention(q, key, value, attn_mask=visible[:, None, None, :], scale=scaling)[:, :, 0]


def _engine_gradients(engine, corpus, indices) -> torch.Tensor:
    """The engine's per-token gradients (float32 ``[S, P]``), in batches as ``exact`` cuts them."""
    from quanta_core.similarity.gradients import Targets, collate

    targets = Targets.of(corpus, indices)
    ours = torch.zeros(len(indices), engine.num_parameters)
    for batch in targets.batches(targets.longest_first(), 8, 4096):
        ids, lengths, tgt = collate(corpus, targets, batch, torch.device("cpu"))
        out = torch.zeros(len(batch), engine.num_parameters)
        engine.compute(ids, lengths, tgt, out)
        ours[torch.from_numpy(batch)] = out
    return ours


def _main() -> None:  # pragma: no cover - the diagnostic's printout
    import os

    from quanta_core.similarity import similarity_matrix

    torch.set_num_threads(1)
    onednn = os.environ.get("QUANTA_ONEDNN", "1") != "0"
    for member in FAMILY + BEYOND_FLOAT32:
        t0 = time.perf_counter()
        model, corpus, losses = build(member)
        indices = selected(losses)
        g64 = float64_gradients(model, corpus, indices)
        truth = (unit_rows(g64) @ unit_rows(g64).T).numpy()
        with torch.no_grad():
            top = model(input_ids=torch.from_numpy(corpus.document(0).astype(np.int64))[None]).logits.abs().max()
        print(f"## {member.name} (oneDNN {'on' if onednn else 'off'}; losses {losses[indices].min():.1e} … "
              f"{losses[indices].max():.2f} nats; max |logit| {float(top):.0f}; {time.perf_counter() - t0:.1f} s)")
        before = block_errors(model, corpus, indices, g64, fused_attention=True)
        after = block_errors(model, corpus, indices, g64)
        for name in before:
            print(f"  {name:52s} {before[name]:.1e} → {after[name]:.1e}")
        exact = similarity_matrix(model, corpus, indices).matrix
        u32 = unit_rows(float32_gradients(model, corpus, indices))
        floor = (u32 @ u32.T).numpy()
        print(f"  exact max |Δcos| {np.abs(exact - truth).max():.1e}; float32 floor {np.abs(floor - truth).max():.1e}")


if __name__ == "__main__":
    _main()
