"""``exact``: every per-token gradient computed exactly (batched, through hooks), normalized, kept
in a resident block within a memory budget, and multiplied block by block.

The context is cut right after the target (exact: the model is causal) and logits are taken only
at the target position. When all S gradients fit the budget each is computed once; otherwise the
tokens are cut into resident blocks as large as the budget allows and, for each block, the tokens
after it are streamed past it in batches (block k is computed k + 1 times).

The block products go to a *sink* (:class:`BlockSink`): :class:`DenseMatrix` writes the S × S
matrix; another sink (e.g. a streaming top-k) can consume the same products without one.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.similarity.gradients import PerTokenGradients, Targets, collate
from quanta_core.similarity.gram import cosines, gram, row_sq_norms, sync, to_fp16_
from quanta_core.similarity.memory import plan_memory
from quanta_core.similarity.results import MethodRun, ProgressCallback, Reporter


class BlockSink(Protocol):
    """Consumer of the Gram's block products.

    ``add(rows, cols, block)``: ``block`` (float64 ``[m, n]`` torch tensor, on the device) holds
    the cosines of the tokens ``rows`` (int64 ``[m]``, positions in the indices) with ``cols``
    (``[n]``). Each unordered pair of tokens arrives exactly once: in a diagonal block
    (``rows is cols``, symmetric) or in an off-diagonal one (the pair's mirror is implied).
    ``finish()`` returns what the sink built."""

    def add(self, rows: np.ndarray, cols: np.ndarray, block: torch.Tensor) -> None: ...

    def finish(self): ...


class DenseMatrix:
    """The whole matrix: float64 ``[S, S]`` on the host."""

    def __init__(self, num_tokens: int):
        self.matrix = np.zeros((num_tokens, num_tokens), dtype=np.float64)

    def add(self, rows: np.ndarray, cols: np.ndarray, block: torch.Tensor) -> None:
        c = block.cpu().numpy()
        self.matrix[np.ix_(rows, cols)] = c
        self.matrix[np.ix_(cols, rows)] = c.T

    def finish(self) -> np.ndarray:
        return self.matrix


class _Blocks:
    """The resident block, the staging block, the L2 norm of every stored row (float64) and
    (float16) the float32 batch buffer of a plan. Rows are stored unnormalized: float32 as
    computed, float16 scaled by a power of two; products are divided by the norms afterwards."""

    def __init__(self, plan, p: int, device: torch.device):
        self.fp16 = plan.resident_dtype == "float16"
        store = torch.float16 if self.fp16 else torch.float32
        self.resident = torch.empty(plan.resident_tokens, p, dtype=store, device=device)
        self.staging = torch.empty(plan.stream_tokens, p, dtype=store, device=device)
        self.res_norm = torch.zeros(plan.resident_tokens, dtype=torch.float64, device=device)
        self.stage_norm = torch.zeros(plan.stream_tokens, dtype=torch.float64, device=device)
        self.buf = torch.empty(plan.batch_size, p, dtype=torch.float32, device=device) if self.fp16 else None



class _Exact:
    """One ``exact`` run: gradients into the blocks of the plan, products into the sink."""

    def __init__(self, model, corpus: CanonicalCorpus, targets: Targets, params, *, budget: int,
                 resident_dtype: str, max_batch: int, batch_tokens: int, progress, sink: BlockSink | None,
                 gram_mode: str = "ieee", absolute: bool = False):
        self.engine = PerTokenGradients(model, params)
        self.corpus, self.targets, self.batch_tokens, self.gram_mode = corpus, targets, batch_tokens, gram_mode
        self.absolute = absolute
        s = len(targets.positions)
        self.plan = plan_memory(s, self.engine.num_parameters, budget, resident_dtype=resident_dtype,
                                max_batch=max_batch)
        self.budget = int(budget)
        self.blocks = _Blocks(self.plan, self.engine.num_parameters, self.engine.device)
        self.sink = sink if sink is not None else DenseMatrix(s)
        self.reporter = Reporter(progress, self.plan.gradient_computations, s, self.plan.blocks)
        self.zero, self.t_grad, self.t_gram = 0, 0.0, 0.0

    def gradients(self, batch: np.ndarray, store_rows: torch.Tensor, norm_rows: torch.Tensor, norms: bool) -> None:
        """Gradients of ``batch`` into ``store_rows`` (float32, or scaled float16), and (``norms``
        or float16) their norms into ``norm_rows``."""
        t0 = time.perf_counter()
        device, blocks = self.engine.device, self.blocks
        ids, lens, tgt = collate(self.corpus, self.targets, batch, device)
        out = blocks.buf[: len(batch)] if blocks.fp16 else store_rows
        self.engine.compute(ids, lens, tgt, out)
        if self.absolute:
            out.abs_()  # |G|: the paper's second matrix, C_abs = |G||G|ᵀ
        if blocks.fp16:
            to_fp16_(out, store_rows, norm_rows)
        elif norms:
            norm_rows.copy_(row_sq_norms(out).sqrt())
        sync(device)
        self.t_grad += time.perf_counter() - t0

    def resident_block(self, k: int, block: np.ndarray) -> None:
        """Compute block ``k``'s gradients into the resident rows and multiply it with itself (float32
        rows get their norms from the product's diagonal)."""
        b, row, r = self.blocks, 0, len(block)
        for batch in self.targets.batches(block, self.plan.batch_size, self.batch_tokens):
            n = len(batch)
            self.gradients(batch, b.resident[row : row + n], b.res_norm[row : row + n], norms=False)
            row += n
            self.reporter.add(n, k)
        t0 = time.perf_counter()
        c = gram(b.resident[:r], mode=self.gram_mode)
        if not b.fp16:
            b.res_norm[:r] = c.diagonal().clamp_min(0).sqrt()
        self.zero += int((b.res_norm[:r] == 0).sum())
        self.sink.add(block, block, cosines(c, b.res_norm[:r], b.res_norm[:r]))
        self.t_gram += time.perf_counter() - t0

    def product(self, block: np.ndarray, staged: list[np.ndarray], fill: int) -> None:
        """Resident block × the ``fill`` staged rows into the sink."""
        t0 = time.perf_counter()
        b, r = self.blocks, len(block)
        c = gram(b.resident[:r], b.staging[:fill], mode=self.gram_mode)
        self.sink.add(block, np.concatenate(staged), cosines(c, b.res_norm[:r], b.stage_norm[:fill]))
        self.t_gram += time.perf_counter() - t0

    def stream_past(self, k: int, block: np.ndarray, rest: np.ndarray) -> None:
        """Stream the tokens ``rest`` past resident block ``k``, gathered in the staging block."""
        b = self.blocks
        staged: list[np.ndarray] = []
        fill = 0
        for batch in self.targets.batches(rest, self.plan.batch_size, self.batch_tokens):
            n = len(batch)
            if fill + n > self.plan.stream_tokens:
                self.product(block, staged, fill)
                staged, fill = [], 0
            self.gradients(batch, b.staging[fill : fill + n], b.stage_norm[fill : fill + n], norms=True)
            staged.append(batch)
            fill += n
            self.reporter.add(n, k)
        if fill:
            self.product(block, staged, fill)

    def run(self) -> MethodRun:
        order = self.targets.longest_first()  # the last blocks are recomputed most
        r = self.plan.resident_tokens
        for k in range(self.plan.blocks):
            block = order[k * r : (k + 1) * r]
            self.resident_block(k, block)
            self.stream_past(k, block, order[(k + 1) * r :])
        assert self.reporter.done == self.plan.gradient_computations
        plan = self.plan
        return MethodRun(
            self.sink.finish(), self.reporter.done, gradient_seconds=self.t_grad, gram_seconds=self.t_gram,
            zero_gradients=self.zero, batch_size=plan.batch_size, memory_budget_bytes=self.budget,
            resident_tokens=plan.resident_tokens, blocks=plan.blocks, resident_dtype=plan.resident_dtype,
            extra={"stream_tokens": plan.stream_tokens, "gram_mode": self.gram_mode},
        )


def exact(model, corpus: CanonicalCorpus, targets: Targets, params, *, budget: int, resident_dtype: str,
          max_batch: int, batch_tokens: int, progress: ProgressCallback | None = None,
          sink: BlockSink | None = None, gram_mode: str = "ieee", absolute: bool = False) -> MethodRun:
    """Run ``exact`` (see the module docstring); ``sink`` defaults to :class:`DenseMatrix`;
    ``gram_mode``: see :mod:`.gram`; ``absolute``: the cosines of |G| (element-wise) instead of G."""
    return _Exact(model, corpus, targets, params, budget=budget, resident_dtype=resident_dtype, max_batch=max_batch,
                  batch_tokens=batch_tokens, progress=progress, sink=sink, gram_mode=gram_mode,
                  absolute=absolute).run()
