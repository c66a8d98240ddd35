"""Benchmark of clustering: the exact road (scikit-learn-identical) and the sparse kNN road.

Sections (``--only a,b``; default: compare, agreement, solvers, kmeans, quality):

* ``compare``: ``spectral_clustering`` against scikit-learn's own ``SpectralClustering`` call
  (S = 2,000, k = 100): identical labels, times.
* ``agreement``: eigen_solver "eigh" against "arpack": identical labels? ARI, max |Δ embedding|,
  the eigengap at the cut, over planted matrices incl. (near-)degenerate spectra.
* ``solvers``: the embedding of the paper's size (S = 10,000, k = 400) with each solver, wall and
  CPU seconds; identical labels after k-means.
* ``kmeans``: where k-means' minutes go at that size: 30 restarts = 30 k-means++ inits + 30 Lloyd
  runs (iterations each), Lloyd vs Elkan.
* ``quality``: the sparse road vs the dense exact road at S = 5,000 (planted clusters, equal and
  Zipf sizes) for several numbers of neighbours: ARI, NMI, times; the dense road's own stability
  (seed 0 vs seed 1) as the ceiling. ``--demo-matrix DIR`` adds a real QDG matrix
  (``quanta_similarity`` directory with ``matrix.npy``).
* ``scale``: the sparse road end to end at ``--scale-samples`` (50,000): kNN by the streaming
  :class:`TopK` from blocks of a synthetic Gram, then clustering; seconds and peak RSS.

    flock /tmp/quanta-bigmem.lock flock /tmp/quanta-bench.lock python benchmarks/bench_clustering.py
    python benchmarks/bench_clustering.py --only agreement,quality --json out.json

Data: unit vectors around planted centres (``synthetic_quanta.py`` for the Zipf-sized paper-like
matrix). Results go to stdout (and ``--json``) as they come.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

from quanta_core.clustering import sparse as kc
from quanta_core.clustering import spectral as clustering
from quanta_core.host_memory import GIB
from quanta_core.similarity import knn

from synthetic_quanta import planted_similarity, zipf_sizes

SECTIONS = ("compare", "agreement", "solvers", "kmeans", "quality", "scale")


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = round(time.perf_counter() - self.wall, 2), round(time.process_time() - self.cpu, 2)


def planted_vectors(num_samples, num_clusters, *, dim=64, noise=1.0, sizes="equal", seed=0):
    """Unit vectors ``[S, dim]`` float32 around random centres and their labels; sizes "equal" or "zipf"."""
    rng = np.random.default_rng(seed)
    counts = zipf_sizes(num_samples, num_clusters) if sizes == "zipf" else np.diff(
        np.linspace(0, num_samples, num_clusters + 1).astype(int))
    labels = rng.permutation(np.repeat(np.arange(num_clusters), counts))
    centres = rng.normal(size=(num_clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise / np.sqrt(dim) * rng.normal(size=(num_samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def orthogonal_equal(num_samples, num_clusters, noise, seed=0):
    """Equal clusters around orthogonal centres: K − 1 nearly equal Laplacian eigenvalues."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_clusters), num_samples // num_clusters)
    x = np.eye(num_clusters)[labels] + noise * rng.normal(size=(labels.size, num_clusters))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T).astype(np.float32)


def section_compare(args, record):
    from sklearn.cluster import SpectralClustering

    clustering.spectral_clustering(planted_similarity(50, 3)[0], 3)  # warm up imports
    C, planted = planted_similarity(args.compare_samples, args.compare_clusters)
    with Clock() as ours_t:
        ours = clustering.spectral_clustering(C, args.compare_clusters, n_init=args.n_init)
    with Clock() as theirs_t:
        theirs = SpectralClustering(args.compare_clusters, affinity="precomputed", assign_labels="kmeans",
                                    n_init=args.n_init, random_state=0)
        theirs = theirs.fit_predict(clustering.affinity_from_similarity(C))
    record("compare", {
        "samples": args.compare_samples, "clusters": args.compare_clusters,
        "ours_seconds": ours_t.wall, "sklearn_seconds": theirs_t.wall,
        "identical_labels": bool(np.array_equal(ours, clustering.rank_clusters(theirs))),
        "ari_vs_planted": round(clustering.compare_labelings(ours, planted)["adjusted_rand"], 4),
    })


def _eigengap(C, k):
    from scipy.sparse.csgraph import laplacian

    L, _ = laplacian(clustering.affinity_from_similarity(C), normed=True, return_diag=True)
    np.fill_diagonal(L, 1.0)
    values = np.linalg.eigvalsh(L)
    return float(values[k] - values[k - 1]) if k < len(values) else float("inf")


def section_agreement(args, record):
    cases = [(f"planted S=180 K=8 noise={n} seed={s}", planted_similarity(180, 8, noise=n, seed=s)[0], k)
             for n, s, k in [(0.6, 0, 8), (1.6, 1, 5), (1.3, 2, 13)]]
    cases += [("zipf S=2000 K=100", planted_similarity(2000, 100)[0], 100)]
    for noise, K, k in [(0.05, 8, 8), (0.05, 8, 5), (0.05, 8, 9), (0.3, 8, 5), (0.01, 10, 6), (0.0, 10, 10),
                        (0.0, 10, 6), (0.0, 10, 12)]:
        cases.append((f"orthogonal equal S=400 K={K} noise={noise}", orthogonal_equal(400, K, noise), k))
    rows = []
    for name, C, k in cases:
        a = clustering.spectral_embedding(C, k, eigen_solver="arpack")
        b = clustering.spectral_embedding(C, k, eigen_solver="eigh")
        la, lb = a.kmeans(k, args.n_init), b.kmeans(k, args.n_init)
        rows.append({"matrix": name, "k": k, "eigengap_at_k": float(f"{_eigengap(C, k):.3g}"),
                     "max_abs_diff_embedding": float(f"{np.abs(a.maps - b.maps).max():.3g}"),
                     "identical_labels": bool(np.array_equal(la, lb)),
                     "ari": round(clustering.compare_labelings(la, lb)["adjusted_rand"], 4)})
        print(rows[-1], flush=True)
    record("agreement", rows)


def section_solvers(args, record):
    C, planted = planted_similarity(args.samples, args.clusters)
    out, embeddings = {"samples": args.samples, "clusters": args.clusters}, {}
    for solver in ("arpack", "eigh"):
        with Clock() as t:
            embeddings[solver] = clustering.spectral_embedding(C, args.clusters, eigen_solver=solver)
        out[f"{solver}_embedding_seconds"], out[f"{solver}_embedding_cpu_seconds"] = t.wall, t.cpu
        print(solver, t.wall, t.cpu, flush=True)
    a, b = embeddings["arpack"], embeddings["eigh"]
    out["max_abs_diff_embedding"] = float(f"{np.abs(a.maps - b.maps).max():.3g}")
    with Clock() as t:
        la = a.kmeans(args.clusters, args.n_init)
    out["kmeans_seconds"], out["kmeans_cpu_seconds"] = t.wall, t.cpu
    out["identical_labels"] = bool(np.array_equal(la, b.kmeans(args.clusters, args.n_init)))
    out["ari_vs_planted"] = round(clustering.compare_labelings(la, planted)["adjusted_rand"], 4)
    record("solvers", out)
    args.embedding = a


def section_kmeans(args, record):
    from sklearn.cluster import KMeans, kmeans_plusplus

    embedding = getattr(args, "embedding", None)
    if embedding is None:
        embedding = clustering.spectral_embedding(planted_similarity(args.samples, args.clusters)[0], args.clusters)
    X, k = embedding.maps, args.clusters
    rng = np.random.RandomState()
    rng.set_state(embedding.rng_state)
    init_s = lloyd_s = elkan_s = 0.0
    iterations, same = [], True
    for _ in range(args.n_init):
        with Clock() as t:
            centres, _ = kmeans_plusplus(X, k, random_state=rng)
        init_s += t.wall
        with Clock() as t:
            lloyd = KMeans(k, init=centres, n_init=1, algorithm="lloyd").fit(X)
        lloyd_s += t.wall
        iterations.append(int(lloyd.n_iter_))
        if args.elkan:
            with Clock() as t:
                elkan = KMeans(k, init=centres, n_init=1, algorithm="elkan").fit(X)
            elkan_s += t.wall
            same &= bool(np.array_equal(elkan.labels_, lloyd.labels_))
    with Clock() as total:  # the same 30 restarts in one scikit-learn call, as the exact road runs them
        embedding.kmeans(k, args.n_init)
    out = {"samples": X.shape[0], "clusters": k, "restarts": args.n_init, "k_means_total_seconds": total.wall,
           "kmeans_plusplus_init_seconds": round(init_s, 1), "lloyd_seconds": round(lloyd_s, 1),
           "lloyd_iterations_per_restart": iterations,
           "lloyd_seconds_per_iteration": round(lloyd_s / sum(iterations), 4)}
    if args.elkan:
        out |= {"elkan_seconds": round(elkan_s, 1), "elkan_identical_to_lloyd": same}
    record("kmeans", out)


def _knn_of_vectors(x, neighbors, block_rows=1024):
    """kNN of the rows of ``x`` through TopK, one block of the Gram ``x[rows] @ x.T`` at a time."""
    top = knn.TopK(x.shape[0], neighbors)
    cols = np.arange(x.shape[0])
    for start in range(0, x.shape[0], block_rows):
        rows = cols[start:start + block_rows]
        top.add(x[rows] @ x.T, rows, cols)
    return top.result()


def _quality_case(name, C, truth, k, args):
    dense = clustering.spectral_clustering(C, k, n_init=args.n_init)
    dense_seed1 = clustering.spectral_clustering(C, k, n_init=args.n_init, random_state=1)
    rows = []
    for neighbors in args.neighbors:
        idx, cos = knn.knn_from_dense(C, neighbors)
        for solver, km in [("amg", "full"), ("amg", "minibatch"), ("lobpcg", "full")]:
            with Clock() as t:
                result = kc.knn_spectral_clustering(idx, cos, k, eigen_solver=solver, kmeans=km, n_init=args.n_init)
            vs_dense = clustering.compare_labelings(result.labels, dense)
            row = {"matrix": name, "S": C.shape[0], "clusters": k, "neighbors": neighbors, "eigen_solver": solver,
                   "kmeans": km, "ari_vs_dense": round(vs_dense["adjusted_rand"], 4),
                   "nmi_vs_dense": round(vs_dense["nmi"], 4),
                   "seconds": t.wall, "embedding_seconds": result.info["embedding_seconds"],
                   "kmeans_seconds": result.info["kmeans_seconds"], "components": result.info["connected_components"]}
            if truth is not None:
                row["ari_vs_planted"] = round(clustering.compare_labelings(result.labels, truth)["adjusted_rand"], 4)
            rows.append(row)
            print(row, flush=True)
    stability = clustering.compare_labelings(dense, dense_seed1)["adjusted_rand"]
    ceiling = {"matrix": name, "dense_seed0_vs_seed1_ari": round(stability, 4)}
    if truth is not None:
        ceiling["dense_ari_vs_planted"] = round(clustering.compare_labelings(dense, truth)["adjusted_rand"], 4)
    print(ceiling, flush=True)
    return rows, ceiling


def section_quality(args, record):
    rows, ceilings = [], []
    for sizes in () if args.no_planted else ("equal", "zipf"):
        x, truth = planted_vectors(args.quality_samples, args.quality_clusters, noise=args.quality_noise, sizes=sizes)
        C = x @ x.T
        r, c = _quality_case(f"planted {sizes} noise={args.quality_noise}", C, truth, args.quality_clusters, args)
        rows, ceilings = rows + r, ceilings + [c]
    if args.demo_matrix:
        C = np.load(Path(args.demo_matrix) / "matrix.npy")
        r, c = _quality_case(f"QDG matrix {args.demo_matrix}", C, None, args.demo_clusters, args)
        rows, ceilings = rows + r, ceilings + [c]
    record("quality", {"runs": rows, "dense_ceilings": ceilings})


def section_scale(args, record):
    S, K = args.scale_samples, args.scale_clusters
    import tracemalloc  # numpy, scipy and pyamg arrays are traced; BLAS scratch is not

    x, truth = planted_vectors(S, K, noise=args.quality_noise, sizes=args.scale_sizes)
    tracemalloc.start()
    with Clock() as t:
        idx, cos = _knn_of_vectors(x, args.scale_neighbors)
    base = {"samples": S, "clusters": K, "sizes": args.scale_sizes, "neighbors": args.scale_neighbors,
            "knn_seconds": t.wall, "knn_entries_per_second": round(S * S / t.wall),
            "knn_traced_peak_gib": round(tracemalloc.get_traced_memory()[1] / GIB, 2)}
    print(base, flush=True)
    runs = []
    for config in args.scale_configs.split(","):
        km, n_init, m = config.split(":")
        m = int(m) if m else K
        estimate = kc.estimate_memory(S, args.scale_neighbors, m, K, "amg", km)
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        with Clock() as t:
            result = kc.knn_spectral_clustering(idx, cos, K, n_components=m, kmeans=km, n_init=int(n_init),
                                                progress=lambda message: print("  ", message, flush=True))
        runs.append({"kmeans": km, "n_init": int(n_init), "n_components": m, "clustering_seconds": t.wall,
                     **{k: v for k, v in result.info.items() if k.endswith("seconds")},
                     "components": result.info["connected_components"],
                     "ari_vs_planted": round(clustering.compare_labelings(result.labels, truth)["adjusted_rand"], 4),
                     "estimated_peak_gib": round(estimate.peak / GIB, 2),
                     "traced_peak_gib": round((tracemalloc.get_traced_memory()[1] - held) / GIB, 2),
                     "peak_rss_gib_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
        print(runs[-1], flush=True)
    record("scale", {**base, "runs": runs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="compare,agreement,solvers,kmeans,quality",
                        help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--clusters", type=int, default=400)
    parser.add_argument("--compare-samples", type=int, default=2_000)
    parser.add_argument("--compare-clusters", type=int, default=100)
    parser.add_argument("--n-init", type=int, default=clustering.N_INIT)
    parser.add_argument("--elkan", action="store_true", help="kmeans: also time Elkan's algorithm")
    parser.add_argument("--quality-samples", type=int, default=5_000)
    parser.add_argument("--quality-clusters", type=int, default=50)
    parser.add_argument("--quality-noise", type=float, default=1.0)
    parser.add_argument("--neighbors", default="10,30,100", help="quality: numbers of neighbours")
    parser.add_argument("--demo-matrix", help="quality: a quanta_similarity directory holding matrix.npy")
    parser.add_argument("--demo-clusters", type=int, default=30)
    parser.add_argument("--no-planted", action="store_true", help="quality: only the --demo-matrix")
    parser.add_argument("--scale-samples", type=int, default=50_000)
    parser.add_argument("--scale-clusters", type=int, default=500)
    parser.add_argument("--scale-neighbors", type=int, default=30)
    parser.add_argument("--scale-sizes", default="equal", choices=("equal", "zipf"))
    parser.add_argument("--scale-configs", default="full:3:,minibatch:3:,full:10:100",
                        help="scale: kmeans:n_init:n_components (empty = clusters), comma-separated")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.neighbors = [int(n) for n in args.neighbors.split(",")]
    from sklearn import __version__ as sklearn_version

    results: dict = {"cpus": os.cpu_count(), "sklearn": sklearn_version, "load_average": os.getloadavg()}

    def record(key, value):
        results[key] = value
        print(f"{key}: {value}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    for section in args.only.split(","):
        if section not in SECTIONS:
            raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
        globals()[f"section_{section}"](args, record)
    record("load_average_after", os.getloadavg())


if __name__ == "__main__":
    main()
