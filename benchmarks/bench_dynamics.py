"""Benchmark: ``quanta_core.learning.dynamics.cluster_loss_curves`` against a naive per-step computation.

There is no original for this stage. The naive baseline is what a notebook would do: load each
step's whole loss table into memory (``np.load`` without ``mmap_mode``), then, cluster by cluster,
``mean`` / ``median`` / ``percentile`` of ``table[indices[labels == k]]``, and ``table.mean()``.
Both run on the same tables (random float32 losses, written to a temporary directory) and the same
selection (S tokens in K clusters); the results are compared.

    python benchmarks/bench_dynamics.py                          # 6 steps × 10.6M floats (~250 MB on disk)
    python benchmarks/bench_dynamics.py --steps 20 --entries 2000000

Prints seconds per step and peak traced memory of each, their ratios, and the projected time of
a 154-step run. The page cache is warm for both (the files were just written), as after a backfill.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from quanta_core.learning.dynamics import cluster_loss_curves

PYTHIA_STEPS = 154


def naive_curves(indices: np.ndarray, labels: np.ndarray, tables: dict[str, Path]) -> pd.DataFrame:
    rows = []
    for step, path in tables.items():
        table = np.load(path)  # the whole table in memory
        overall = float(table.astype(np.float64).mean())
        for k in np.unique(labels):
            x = table[indices[labels == k]].astype(np.float64)
            rows.append((step, int(k), x.mean(), np.median(x), *np.percentile(x, [25, 75]), overall))
    return pd.DataFrame(rows, columns=["step", "cluster", "mean", "median", "q25", "q75", "overall_mean"])


def measure(fn):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--entries", type=int, default=10_600_000, help="loss table length (20,000 Pile docs ≈ 10.6M)")
    parser.add_argument("--tokens", type=int, default=10_000, help="clustered tokens S")
    parser.add_argument("--clusters", type=int, default=400)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(args.entries, args.tokens, replace=False)).astype(np.int64)
    labels = rng.integers(0, args.clusters, args.tokens).astype(np.int64)
    with tempfile.TemporaryDirectory(prefix="bench_dynamics.") as tmp:
        tables = {}
        for i in range(args.steps):
            path = Path(tmp) / f"step{1000 * i}.npy"
            np.save(path, rng.uniform(0, 10, args.entries).astype(np.float32))
            tables[f"step{1000 * i}"] = path
        ours, t_ours, m_ours = measure(lambda: cluster_loss_curves(indices, labels, tables))
        naive, t_naive, m_naive = measure(lambda: naive_curves(indices, labels, tables))

    merged = ours.merge(naive, on=["step", "cluster"], suffixes=("", "_naive"))
    worst = max(float(np.max(np.abs(merged[c] - merged[f"{c}_naive"])))
                for c in ("mean", "median", "q25", "q75", "overall_mean"))
    print(f"{args.steps} steps × {args.entries:,} floats, S = {args.tokens:,} tokens in {args.clusters} clusters")
    print(f"  ours : {t_ours / args.steps:7.3f} s/step, peak traced memory {m_ours / 2**20:8.1f} MiB")
    print(f"  naive: {t_naive / args.steps:7.3f} s/step, peak traced memory {m_naive / 2**20:8.1f} MiB")
    print(f"  ratio (naive / ours): time {t_naive / t_ours:.1f}×, memory {m_naive / max(m_ours, 1):.0f}×")
    print(f"  max |difference| of statistics: {worst:.2e} nats")
    print(f"  projected {PYTHIA_STEPS}-step run: ours {PYTHIA_STEPS * t_ours / args.steps:.0f} s")


if __name__ == "__main__":
    main()
