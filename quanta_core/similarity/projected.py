"""``projected``: each raw gradient compressed with a seeded CountSketch (sparse random projection:
each coordinate goes to one of ``projection_dim`` buckets with a random sign), then normalized.
Every gradient is computed once; memory is ``S × projection_dim``. An approximation: the error of
a cosine is about ``sqrt((1 + cos²) / projection_dim)``."""

from __future__ import annotations

import time

import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.presets import PROJECTION_DIM
from quanta_core.similarity.gradients import PerTokenGradients, Targets, collate
from quanta_core.similarity.gram import sync
from quanta_core.similarity.results import MethodRun, ProgressCallback, Reporter
from quanta_core.similarity.sketches import Sketch, countsketch, sketch
from quanta_core.similarity.tiles import StoredRows, gram_into_sink

__all__ = ["DEFAULT_PROJECTION_DIM", "Sketch", "countsketch", "projected", "sketch"]

DEFAULT_PROJECTION_DIM = PROJECTION_DIM


def projected(model, corpus: CanonicalCorpus, targets: Targets, params, *, dim: int, seed: int, max_batch: int,
              batch_tokens: int, progress: ProgressCallback | None = None, sink=None, row_dtype: str = "float32",
              gram_mode: str = "ieee", projection: str = "countsketch", absolute: bool = False) -> MethodRun:
    """Run ``projected`` (see the module docstring). Without ``sink``: the dense matrix from
    float64 normalized rows. With a ``sink`` (:class:`.exact.BlockSink`): the rows are stored in
    ``row_dtype`` (``float32`` | ``float16`` scaled, :class:`.tiles.StoredRows`) and their Gram goes
    to the sink tile by tile (:func:`.tiles.gram_into_sink`); ``MethodRun.matrix`` is ``sink.finish()``.
    ``projection``: a :mod:`.sketches` kind; ``absolute``: sketch |G| (element-wise) instead of G."""
    engine = PerTokenGradients(model, params)
    device, p, s = engine.device, engine.num_parameters, len(targets.positions)
    projector = Sketch(p, dim, seed, device, projection)
    buf = torch.empty(min(max_batch, s), p, dtype=torch.float32, device=device)
    if sink is None:
        proj = torch.zeros(s, dim, dtype=torch.float64, device=device)
    else:
        stored = StoredRows(s, dim, row_dtype, device)
    reporter = Reporter(progress, s, s, 1)
    t_grad = 0.0
    for batch in targets.batches(targets.longest_first(), buf.shape[0], batch_tokens):
        n = len(batch)
        t0 = time.perf_counter()
        ids, lens, tgt = collate(corpus, targets, batch, device)
        engine.compute(ids, lens, tgt, buf[:n])
        if absolute:
            buf[:n].abs_()
        rows = torch.from_numpy(batch).to(device)
        if sink is None:
            proj[rows] = projector.apply(buf[:n])
        else:
            stored.put(rows, projector.apply(buf[:n]).float())
        sync(device)
        t_grad += time.perf_counter() - t0
        reporter.add(n)
    t0 = time.perf_counter()
    extra = {}
    if sink is not None:
        del buf
        tiles = Reporter(progress, 0, s, 1, stage="gram")
        zero = gram_into_sink(stored, sink, mode=gram_mode, progress=tiles.tiles)
        matrix = sink.finish()
        extra.update(row_dtype=row_dtype, gram_mode=gram_mode)
    else:
        norms = proj.norm(dim=1)
        zero = int((norms == 0).sum())
        proj /= norms.clamp_min(1e-12)[:, None]
        matrix = proj @ proj.T
        matrix = ((matrix + matrix.T) / 2).cpu().numpy()
    return MethodRun(matrix, s, gradient_seconds=t_grad, gram_seconds=time.perf_counter() - t0, zero_gradients=zero,
                     batch_size=buf.shape[0] if sink is None else min(max_batch, s), projection_dim=dim, seed=seed,
                     extra=extra)
