"""The sparse road at scale (issue 15): ``projected`` similarity of S tokens of a pythia-70m-shaped
model (random weights, synthetic Pile-like documents) straight into each token's k nearest
neighbours — no S × S array. Prints wall seconds, gradients/s, the Gram + top-k seconds and the
peak memory. The goal on an H200: S = 100,000 in ≤ 3 minutes.

    python benchmarks/bench_projected_knn.py --device cuda --tokens 100000     # the GPU goal
    python benchmarks/bench_projected_knn.py --tokens 64 --threads 2           # a CPU smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from quanta_core.similarity import similarity_matrix  # noqa: E402

from bench_similarity import progress_printer, pythia_70m_shape, synthetic_corpus  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=100_000, help="S, selected tokens")
    ap.add_argument("--projection-dim", type=int, default=8192)
    ap.add_argument("--projection", default="countsketch")
    ap.add_argument("--neighbors", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument("--batch-tokens", type=int, default=None)
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = pythia_70m_shape(args.device)
    corpus = synthetic_corpus(max(200, args.tokens // 400))
    if corpus.num_predictable < args.tokens:
        raise SystemExit(f"the synthetic corpus has {corpus.num_predictable:,} predictable tokens < {args.tokens:,}")
    rng = np.random.default_rng(1)
    indices = np.sort(rng.choice(corpus.num_predictable, args.tokens, replace=False)).astype(np.int64)
    print(f"device {args.device}, torch {torch.__version__}; S = {args.tokens:,}, projected to "
          f"{args.projection_dim:,} ({args.projection}), {args.neighbors} neighbours", flush=True)
    started = time.perf_counter()
    result = similarity_matrix(model, corpus, indices, method="projected", projection_dim=args.projection_dim,
                               projection=args.projection, neighbors=args.neighbors, max_batch=args.max_batch,
                               batch_tokens=args.batch_tokens, progress=progress_printer())
    seconds = time.perf_counter() - started
    meta = result.metadata()
    print(f"total {seconds:.1f} s: gradients {result.gradient_seconds:.1f} s "
          f"({args.tokens / max(result.gradient_seconds, 1e-9):.1f} gradients/s), Gram + top-k "
          f"{result.gram_seconds:.1f} s; peak memory {result.peak_memory_bytes / 2**30:.2f} GiB")
    print(f"knn_indices {result.knn_indices.shape}, mean nearest cosine {float(np.mean(result.knn_cosines[:, 0])):.4f}")
    print({k: v for k, v in meta.items() if isinstance(v, (int, float, str))})


if __name__ == "__main__":
    main()
