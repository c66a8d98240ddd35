"""``reference``: a faithful re-implementation of the original ``scripts/similarity_matrix_v1.py``.

Full document, full logits, one token at a time with ``.backward()``, float32 gradients
normalized with ``F.normalize``, Gram in blocks of ``block_len`` = 250 where both blocks of every
block pair are recomputed (``2.02`` gradients per token at S = 256, ``21.5`` at S = 10,000).
For tests and benchmarks, never the default.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quanta_core.corpus.canonical import CanonicalCorpus, index_to_doc_pos
from quanta_core.similarity.gram import sync
from quanta_core.similarity.results import MethodRun, ProgressCallback, Reporter

ORIGINAL_BLOCK_LEN = 250


def original_gradient_computations(num_tokens: int, block_len: int = ORIGINAL_BLOCK_LEN) -> int:
    """Gradients the original script computes for S tokens: block i is computed once as the outer
    block and once for every block pair (j ≤ i) as the inner block: ``Σ_i |B_i| (i + 2)``."""
    blocks = [min(block_len, num_tokens - i) for i in range(0, num_tokens, block_len)]
    return sum(size * (i + 2) for i, size in enumerate(blocks))


class _OriginalGradient:
    """The original's ``get_flattened_gradient`` after one token's ``.backward()`` (float32 ``[P]``)."""

    def __init__(self, model: nn.Module, corpus: CanonicalCorpus, params: list[tuple[str, nn.Parameter]]):
        self.model, self.corpus = model, corpus
        self.subset = {n for n, _ in params}
        self.device = params[0][1].device
        self.seconds = 0.0

    def __call__(self, idx: int) -> torch.Tensor:
        t0 = time.perf_counter()
        model = self.model
        model.zero_grad()
        doc, pos = index_to_doc_pos(idx, self.corpus.starts)
        ids = torch.from_numpy(self.corpus.document(int(doc)).astype(np.int64))[None].to(self.device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        ls = F.cross_entropy(logits[0, :-1, :], ids[0, 1:], reduction="none")
        ls[int(pos) - 1].backward()
        g = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if n in self.subset])
        sync(self.device)
        self.seconds += time.perf_counter() - t0
        return g


def _block_gradients(gradient: _OriginalGradient, block: list[int], len_g: int, reporter: Reporter, k: int):
    rows = torch.zeros((len(block), len_g), device=gradient.device)
    for i, idx in enumerate(block):
        rows[i] = gradient(idx)
        reporter.add(1, k)
    return F.normalize(rows, p=2, dim=1)


def reference(model: nn.Module, corpus: CanonicalCorpus, indices: np.ndarray, params, *, block_len: int,
              progress: ProgressCallback | None) -> MethodRun:
    """The original script's loop, with our parameter set (``params``)."""
    gradient = _OriginalGradient(model, corpus, params)
    len_g = sum(p.numel() for _, p in params)
    token_idxs = [int(i) for i in indices]
    s = len(token_idxs)
    blocks = [token_idxs[i : min(s, i + block_len)] for i in range(0, s, block_len)]
    reporter = Reporter(progress, original_gradient_computations(s, block_len), s, len(blocks))
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    C = torch.zeros((s, s), device=gradient.device)
    try:
        for p, _ in grad_flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            iouter = 0
            for j_index, iblock in enumerate(blocks):
                Gi = _block_gradients(gradient, iblock, len_g, reporter, j_index)
                jouter = sum(len(block) for block in blocks[:j_index])
                for jblock in blocks[j_index:]:
                    Gj = _block_gradients(gradient, jblock, len_g, reporter, j_index)
                    Cij = torch.matmul(Gi, Gj.T)
                    C[iouter : iouter + len(iblock), jouter : jouter + len(jblock)] = Cij
                    C[jouter : jouter + len(jblock), iouter : iouter + len(iblock)] = Cij.T
                    jouter += len(jblock)
                iouter += len(iblock)
    finally:
        model.zero_grad()
        for p, flag in grad_flags:
            p.requires_grad_(flag)
    return MethodRun(C.detach().cpu().numpy(), reporter.done, gradient_seconds=gradient.seconds, blocks=len(blocks))
