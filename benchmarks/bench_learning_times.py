"""Benchmark: the vectorized per-token sigmoid fit (``quanta_core.learning.times.fit_learning_times``)
against a naive per-token ``scipy.optimize.curve_fit`` loop on the same data.

Data: synthetic loss tables at Pythia's 154 checkpoints (``--steps`` fewer: evenly thinned), one
float32 ``.npy`` per step in a temporary directory, read memory-mapped. Tokens are a mix like real
ones: 80 % sigmoids (initial 6–11 nats, drop 2–8, midpoint anywhere, width 0.03–0.8 decades) with
0.25-nat noise, 10 % flat (never learned), 10 % very noisy. The naive loop is what a notebook would
do: for each token, ``curve_fit`` (bounded trust-region reflective, the same bounds) from a generic
start (final loss, total drop, middle of the range, 0.3 decades). Both fits are compared (SSE).

    flock /tmp/quanta-bench.lock python benchmarks/bench_learning_times.py                  # 200,000 tokens
    flock /tmp/quanta-bench.lock python benchmarks/bench_learning_times.py --tokens 1000000 --workers 1,2

Prints tokens/s (wall and per CPU second) per worker count, peak traced memory (numpy's
allocations, via tracemalloc) against the stated bound, the ratio to the naive loop, and the
projected time of the Pythia case (10.6M tokens × 154 steps).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

from quanta_core.learning.fit import FitSettings, bounds_for
from quanta_core.learning.times import CHUNK_TOKENS, WORKING_ARRAYS, fit_learning_times, step_positions
from quanta_core.steps import PYTHIA_STEPS

PYTHIA_TOKENS = 10_600_000


def _sigmoid(x, final, drop, mid, width):
    return final + drop / (1.0 + np.exp(np.clip((x - mid) / width, -500, 500)))


def write_tables(directory: Path, steps: list[str], tokens: int, seed: int = 0) -> dict[str, Path]:
    """One float32 ``.npy`` per step (generated step by step: memory O(tokens))."""
    rng = np.random.default_rng(seed)
    x = step_positions(steps)
    kind = rng.choice(3, tokens, p=[0.8, 0.1, 0.1])
    initial = rng.uniform(6, 11, tokens)
    drop = np.where(kind == 1, 0.0, rng.uniform(2, 8, tokens))
    mid = rng.uniform(x[0], x[-1], tokens)
    width = np.exp(rng.uniform(np.log(0.03), np.log(0.8), tokens))
    noise = np.where(kind == 2, 3.0, 0.25)
    paths = {}
    for t, step in enumerate(steps):
        losses = _sigmoid(x[t], initial - drop, drop, mid, width) + noise * rng.standard_normal(tokens)
        paths[step] = directory / f"{step}.npy"
        np.save(paths[step], np.maximum(losses, 0).astype(np.float32), allow_pickle=False)
    return paths


def naive_fit(paths: dict[str, Path], steps: list[str], tokens: int) -> tuple[np.ndarray, float]:
    """``curve_fit`` token by token on the first ``tokens`` tokens: (SSE ``[tokens]``, seconds)."""
    x = step_positions(steps)
    bounds = bounds_for(x, FitSettings())
    lo = [-np.inf, -np.inf, bounds.x_min, bounds.min_width]
    hi = [np.inf, np.inf, bounds.x_max, bounds.max_width]
    tables = [np.load(paths[s], mmap_mode="r") for s in steps]
    sse = np.full(tokens, np.inf)
    started = time.perf_counter()
    for g in range(tokens):
        y = np.array([t[g] for t in tables], dtype=np.float64)
        p0 = [y[-1], y[0] - y[-1], (x[0] + x[-1]) / 2, 0.3]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                p, _ = curve_fit(_sigmoid, x, y, p0=p0, bounds=(lo, hi), maxfev=5000)
            sse[g] = float(((y - _sigmoid(x, *p)) ** 2).sum())
        except RuntimeError:  # no convergence within maxfev: left at inf
            pass
    return sse, time.perf_counter() - started


def run(paths, chunk: int, workers: int, trace: bool):
    if trace:
        tracemalloc.start()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        fits = fit_learning_times(paths, chunk_tokens=chunk, workers=workers)
        peak = tracemalloc.get_traced_memory()[1] if trace else None
    finally:
        if trace:
            tracemalloc.stop()
    return fits, time.perf_counter() - wall, time.process_time() - cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--steps", type=int, default=len(PYTHIA_STEPS), help="checkpoints (≤ 154, evenly thinned)")
    parser.add_argument("--chunk", type=int, default=CHUNK_TOKENS)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts to time")
    parser.add_argument("--naive-tokens", type=int, default=500, help="tokens for the curve_fit loop")
    args = parser.parse_args()

    index = np.unique(np.linspace(0, len(PYTHIA_STEPS) - 1, min(args.steps, len(PYTHIA_STEPS))).round().astype(int))
    steps = [PYTHIA_STEPS[i] for i in index]
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        started = time.perf_counter()
        paths = write_tables(Path(tmp), steps, args.tokens)
        size = sum(p.stat().st_size for p in paths.values())
        print(f"tables: {args.tokens:,} tokens × {len(steps)} steps, {size / 2**20:,.0f} MiB float32 on disk "
              f"(written in {time.perf_counter() - started:.1f} s)")

        rates = {}
        for workers in [int(w) for w in args.workers.split(",")]:
            fits, wall, cpu, _ = run(paths, args.chunk, workers, trace=False)
            rates[workers] = args.tokens / wall
            print(f"vectorized, {workers} worker(s): {wall:.1f} s, {rates[workers]:,.0f} tokens/s wall, "
                  f"{args.tokens / cpu:,.0f} tokens per CPU second; well fit {fits.summary['well_fit_fraction']:.1%}")
        memory_tokens = min(args.tokens, 4 * args.chunk)
        small = {s: np.load(p, mmap_mode="r")[:memory_tokens] for s, p in paths.items()}
        _, _, _, peak = run(small, args.chunk, 1, trace=True)
        bound = WORKING_ARRAYS * args.chunk * len(steps) * 8 + 29 * memory_tokens
        print(f"peak traced memory (1 worker, {memory_tokens:,} tokens, chunk {args.chunk:,}): {peak / 2**20:.1f} MiB "
              f"(stated bound {bound / 2**20:.1f} MiB = {WORKING_ARRAYS} × chunk × steps × 8 B + 29 B per token)")

        naive_sse, naive_seconds = naive_fit(paths, steps, args.naive_tokens)
        naive_rate = args.naive_tokens / naive_seconds
        ours = fits.columns["rms"][: args.naive_tokens].astype(np.float64) ** 2 * len(steps)
        finite = np.isfinite(naive_sse)
        print(f"naive curve_fit loop: {args.naive_tokens:,} tokens in {naive_seconds:.1f} s, "
              f"{naive_rate:,.0f} tokens/s; {(~finite).sum()} did not converge")
        gap = (ours - naive_sse)[finite] / np.maximum(naive_sse[finite], 1e-6)  # relative, SSE ~0 counts as 1e-6
        print(f"fit quality vs curve_fit (SSE, relative; below 1e-6 nats² as 1e-6): ours ≤ curve_fit × (1 + 1e-6) "
              f"on {(gap <= 1e-6).mean():.1%} of tokens, better by > 1 % on {(gap < -0.01).mean():.1%}, "
              f"worse by > 1 % on {(gap > 0.01).mean():.1%} (worst {gap.max():+.1e})")
        best = max(rates.values())
        print(f"speed-up over the naive loop: {best / naive_rate:,.0f}× ({max(rates, key=rates.get)} worker(s))")
        print(f"projected Pythia case ({PYTHIA_TOKENS:,} tokens × {len(PYTHIA_STEPS)} steps): "
              f"{PYTHIA_TOKENS / best * 154 / len(steps) / 60:,.0f} min vectorized vs "
              f"{PYTHIA_TOKENS / naive_rate * 154 / len(steps) / 3600:,.0f} h naive (scaled linearly in steps)")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        print(f"process peak RSS: {rss:,.0f} MiB (includes the generated data and memory-mapped pages)")


if __name__ == "__main__":
    main()
