"""Benchmark: the ``projected`` method's projections (quanta_core.similarity.sketches) against the
exact cosine matrix, on the demo model of bench_similarity.py (pythia-70m's shape, random weights,
18.9M similarity parameters) and its synthetic Pile-like corpus; or (``--demo-cache``) on the
trained ``quanta-demo`` model of a ``make demo`` cache and the tokens its ``quanta_similarity`` selected.

1. The exact matrix: ``similarity_matrix(method="exact")`` on the S tokens (float16 resident rows,
   4e-6 of float64 — docs/similarity.md).
2. One pass of per-token gradients (the engine ``projected`` uses); each batch is projected by
   every kind at ``--max-dim`` (the product's ``Sketch(P, max_dim, seed, device, kind)``); every
   smaller power-of-two k is folded from it (bucket u → u mod (k/s) inside each of the s blocks),
   which is the same kind of projection at k with independent uniform buckets and signs — the
   same distribution as ``Sketch(P, k, ·, kind)``, without a scatter pass per k.
3. Per kind and k: rms, mean and max |Δcos| of the off-diagonal entries vs exact; the theory
   sqrt(mean (1 − cos²)²/k) of a normalized Gaussian JL; and the same for float16 storage of the
   normalized rows scaled by √k (Gram of the float16 values in float32) — its extra error vs float64.
4. Seconds per token of ``Sketch.apply`` per kind and k (``--time-dims``), and of the gradients.

    flock /tmp/quanta-bench.lock python benchmarks/bench_projection.py --tokens 128
    # the trained demo model (quanta-demo, 3.4M parameters) on the tokens ``make demo`` selected:
    flock /tmp/quanta-bench.lock python benchmarks/bench_projection.py --demo-cache .quanta_cache --tokens 600
    python benchmarks/bench_projection.py --device cuda --tokens 2000       # GPU (unmeasured here)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from quanta_core.similarity import budget_for_resident, similarity_matrix, similarity_parameters
from quanta_core.similarity.gradients import PerTokenGradients, Targets, collate
from quanta_core.similarity.gram import PrecisionGuard, sync
from quanta_core.similarity.sketches import MAX_DIM, Sketch, parse_kind

from bench_similarity import pythia_70m_shape, synthetic_corpus


def fold(y: torch.Tensor, nonzeros: int, k: int) -> torch.Tensor:
    """A projection ``[n, D]`` of ``nonzeros`` blocks folded to ``[n, k]`` (bucket u → u mod (k/s) per block)."""
    n, d = y.shape
    w = k // nonzeros
    return y.view(n, nonzeros, d // nonzeros // w, w).sum(2).reshape(n, k)


def errors(m: np.ndarray, exact: np.ndarray) -> tuple[float, float, float]:
    """(rms, mean, max) of |m − exact| off the diagonal."""
    e = np.abs(m - exact)[~np.eye(len(m), dtype=bool)]
    return float(np.sqrt((e**2).mean())), float(e.mean()), float(e.max())


def normalized(y: torch.Tensor) -> torch.Tensor:
    return y / y.norm(dim=1, keepdim=True).clamp_min(1e-300)


def gram64(u: torch.Tensor) -> np.ndarray:
    return (u @ u.T).cpu().numpy()


def gram16(u: torch.Tensor) -> np.ndarray:
    """Gram of the unit rows ``u`` stored as float16 × √k (entries O(1)), products in float32."""
    k = u.shape[1]
    h = (u * k**0.5).to(torch.float16).float()
    return ((h @ h.T) / k).double().cpu().numpy()


def project_all(model, corpus, indices, kinds, max_dim, seed, device, max_batch, batch_tokens):
    """Per kind, the float64 projections ``[S, max_dim]`` of the S gradients; seconds of the gradients."""
    params = similarity_parameters(model)
    engine = PerTokenGradients(model, params)
    p, s = engine.num_parameters, len(indices)
    targets = Targets.of(corpus, indices)
    sketches = {kind: Sketch(p, max_dim, seed, device, kind) for kind in kinds}
    proj = {kind: torch.zeros(s, max_dim, dtype=torch.float64, device=device) for kind in kinds}
    buf = torch.empty(min(max_batch, s), p, dtype=torch.float32, device=device)
    t_grad, done, last = 0.0, 0, time.perf_counter()
    for batch in targets.batches(targets.longest_first(), buf.shape[0], batch_tokens):
        n = len(batch)
        t0 = time.perf_counter()
        engine.compute(*collate(corpus, targets, batch, device), buf[:n])
        sync(device)
        t_grad += time.perf_counter() - t0
        rows = torch.from_numpy(batch).to(device)
        for kind in kinds:
            proj[kind][rows] = sketches[kind].apply(buf[:n])
        done += n
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"  … {done}/{s} tokens projected", flush=True)
    return proj, t_grad, buf


def time_apply(buf, kinds, dims, seed, device, p) -> dict:
    """Seconds per token of ``Sketch(p, k, seed, device, kind).apply`` on a batch of gradients."""
    out = {}
    for k in dims:
        for kind in kinds:
            sk = Sketch(p, k, seed, device, kind)
            sk.apply(buf[:1])
            sync(device)
            t = time.perf_counter()
            sk.apply(buf)
            sync(device)
            out[kind, k] = (time.perf_counter() - t) / buf.shape[0]
            del sk
    return out


def pythia_case(args):
    """bench_similarity's model (pythia-70m shape, random weights), corpus and S uniform tokens."""
    model = pythia_70m_shape(args.device)
    corpus = synthetic_corpus(max(200, args.tokens))
    rng = np.random.default_rng(1)
    indices = np.sort(rng.choice(corpus.num_predictable, args.tokens, replace=False)).astype(np.int64)
    return model, corpus, indices


def demo_case(args):
    """The trained quanta-demo model of a ``make demo`` cache, its corpus, the first S selected tokens."""
    from quanta_core.corpus.canonical import CanonicalCorpus
    from quanta_core.models.checkpoints import load_checkpoint

    root = os.path.abspath(args.demo_cache)
    model = load_checkpoint("quanta-demo", args.demo_step, hub_cache_dir=os.path.join(root, "hub"),
                            device=args.device, offline=True).model
    corpus = CanonicalCorpus.load(os.path.join(root, "corpus", "pile_canonical"))
    indices = np.load(os.path.join(root, "quanta-demo", args.demo_step, "quanta_similarity", "indices.npy"))
    return model, corpus, np.sort(indices[: args.tokens]).astype(np.int64)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=128, help="S, selected tokens")
    ap.add_argument("--kinds", default="countsketch,sjlt-2,sjlt-4,sjlt-8")
    ap.add_argument("--dims", default="256,1024,4096,16384,65536,262144")
    ap.add_argument("--time-dims", default="4096,65536,262144", help="k at which Sketch.apply is timed")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, one projection pass each")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--demo-cache", default=None, help="a make-demo cache: quanta-demo and its selected tokens")
    ap.add_argument("--demo-step", default="step512")
    return ap.parse_args()


def error_table(model, corpus, indices, exact, args, kinds, dims, device):
    """Per kind and k, the errors vs ``exact`` (mean over ``--seeds``, one projection pass each);
    returns the last pass's gradient batch and seconds per gradient."""
    off = exact[~np.eye(len(exact), dtype=bool)]
    stats = {}
    seeds = [int(x) for x in args.seeds.split(",")]
    for seed in seeds:
        t = time.perf_counter()
        proj, t_grad, buf = project_all(model, corpus, indices, kinds, dims[-1], seed, device,
                                        args.max_batch, args.batch_tokens)
        print(f"[projection pass, seed {seed}] {time.perf_counter() - t:.0f} s "
              f"({t_grad / len(indices):.2f} s per gradient)", flush=True)
        for k in dims:
            for kind in kinds:
                u = normalized(fold(proj[kind], parse_kind(kind), k))
                m64, m16 = gram64(u), gram16(u)
                stats.setdefault((kind, k), []).append(
                    (*errors(m64, exact), *errors(m16, exact)[::2], float(np.abs(m16 - m64).max())))
        del proj
    c4 = ((1 - off**2) ** 2).mean()  # the theory's rms is sqrt(c4 / k)
    print(f"\nmeans over seeds {seeds}\n\n| kind | k | rms \\|Δcos\\| (sd over seeds) | mean | max (sd) | theory rms | "
          "float16 rows: rms | max | extra max vs float64 |\n|---|---|---|---|---|---|---|---|---|")
    for k in dims:
        for kind in kinds:
            a = np.array(stats[kind, k])
            rms, mean, mx, rms16, mx16 = a[:, :5].mean(0)
            print(f"| {kind} | {k:,} | {rms:.5f} ({a[:, 0].std():.5f}) | {mean:.5f} | {mx:.5f} ({a[:, 2].std():.5f}) | "
                  f"{np.sqrt(c4 / k):.5f} | {rms16:.5f} | {mx16:.5f} | {a[:, 5].max():.1e} |", flush=True)
    return buf, t_grad / len(indices)


def speed_table(buf, kinds, dims, seed, device, p, per_gradient) -> None:
    speeds = time_apply(buf, kinds, dims, seed, device, p)
    print(f"\nseconds per token of Sketch.apply (batch of {buf.shape[0]}; gradients: {per_gradient:.2f} s per "
          "token)\n\n| kind | " + " | ".join(f"k = {k:,}" for k in dims) + " |\n|---|" + "---|" * len(dims))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(f"{speeds[kind, k]:.3f}" for k in dims) + " |")


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kinds = args.kinds.split(",")
    dims = sorted(int(x) for x in args.dims.split(","))
    assert dims[-1] <= MAX_DIM and all(dims[-1] % k == 0 and k % parse_kind(kd) == 0 for k in dims for kd in kinds)
    model, corpus, indices = demo_case(args) if args.demo_cache else pythia_case(args)
    p = sum(x.numel() for _, x in similarity_parameters(model))
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; P = {p:,}, "
          f"S = {args.tokens}, kinds {kinds}, k {dims}")
    t = time.perf_counter()
    ex = similarity_matrix(model, corpus, indices, resident_dtype="float16", max_batch=args.max_batch,
                           memory_budget_bytes=budget_for_resident(len(indices), p, len(indices), "float16"))
    exact = ex.matrix.astype(np.float64)
    off = exact[~np.eye(len(exact), dtype=bool)]
    print(f"[exact] {time.perf_counter() - t:.0f} s ({ex.gradient_seconds / len(indices):.2f} s per gradient); "
          f"off-diagonal cosines: mean {off.mean():.3f}, rms {np.sqrt((off**2).mean()):.3f}, "
          f"max |cos| {np.abs(off).max():.3f}")
    with PrecisionGuard(), torch.no_grad():
        buf, per_gradient = error_table(model, corpus, indices, exact, args, kinds, dims, device)
        time_dims = [int(x) for x in args.time_dims.split(",") if x]
        if time_dims:
            speed_table(buf, kinds, time_dims, int(args.seeds.split(",")[0]), device, p, per_gradient)


if __name__ == "__main__":
    main()
