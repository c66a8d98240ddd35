"""Benchmark: QDG similarity, ``exact`` vs the original's algorithm (``reference``).

Same machine, same model (pythia-70m's shape: hidden 512, 6 layers, 8 heads, vocab 50,304,
rotary 25 %, parallel residual; random weights, float32), same selected tokens (uniformly drawn
predictable tokens of a synthetic corpus whose document lengths mimic the Pile's first 20,000
test documents: 40 % truncated at 1,024 tokens, the rest log-normal around 150; about 530
predictable tokens per document, as the original's 10,658,635 over 20,000).

Prints seconds per gradient and total seconds of each method, their gradient computations and
the ratios. The reference (full document, full logits, Gram blocks of 250 recomputed per block
pair) is run on ``--reference-tokens`` tokens and its per-gradient cost extrapolated to all
tokens with the original's count of gradient computations (``--full-reference`` runs it whole).

    python benchmarks/bench_similarity.py                      # CPU, S = 256
    python benchmarks/bench_similarity.py --device cuda --tokens 10000 --skip-reference
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.host_memory import GIB
from quanta_core.similarity import (
    ORIGINAL_BLOCK_LEN,
    budget_for_resident,
    default_memory_budget,
    original_gradient_computations,
    plan_memory,
    similarity_matrix,
    similarity_parameters,
)


def pythia_70m_shape(device: str, seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
        max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
        tie_word_embeddings=False, layer_norm_eps=1e-5,
    )
    return GPTNeoXForCausalLM(config).eval().to(device)


def synthetic_corpus(num_documents: int, seed: int = 0) -> CanonicalCorpus:
    rng = np.random.default_rng(seed)
    lengths = np.where(rng.random(num_documents) < 0.4, 1024,
                       np.clip(rng.lognormal(np.log(150), 1.0, num_documents), 1, 1024)).astype(np.int64)
    ids = rng.integers(0, 50277, int(lengths.sum())).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": lengths}))


def gemm_rate(device: torch.device, rows: int) -> float:
    """float32 FLOP/s of an [rows, K] @ [K, rows] product (the shape of the original's Gram blocks)."""
    k = 1 << 18
    a = torch.randn(rows, k, device=device)
    b = torch.randn(rows, k, device=device)
    torch.mm(a, b.T)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    torch.mm(a, b.T)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * rows * rows * k / (time.perf_counter() - t)


def gradient_flops(config, lengths: np.ndarray) -> float:
    """Matrix FLOPs of ``exact``'s gradients for contexts of ``lengths`` tokens (real tokens, no
    padding): every decoder layer but the last runs forward (24·d² per token for the QKV,
    attention-output and MLP products), input-gradient backward (24·d², less the first layer's
    QKV and, with the parallel residual, its first MLP product: the pass stops at their outputs)
    and the per-sample weight gradients (24·d²); the last layer's QKV
    does the same on every token (3 × 6·d²) and its attention output and MLP on the target row
    only; causal attention 2·T²·d forward + 4·T²·d backward per layer; the unembedding of the
    target row forward and backward (4·d·V). Elementwise work (norms, GELU, rotary, softmax) is
    not counted."""
    d, layers, v = config.hidden_size, config.num_hidden_layers, config.vocab_size
    ff = config.intermediate_size
    per_token_layer = 2 * d * (3 * d + d + 2 * ff)  # forward products of one layer, one token
    t = np.asarray(lengths, dtype=np.float64)
    first = 2 * d * 3 * d + (2 * d * ff if config.use_parallel_residual else 0)  # input gradients not formed
    linear = t * (per_token_layer * 3 * (layers - 1) - first + 3 * 2 * d * 3 * d)
    last_row = 3 * 2 * d * (d + 2 * ff)
    attention = layers * 6 * t**2 * d
    return float((linear + last_row + attention + 4 * d * v).sum())


def gemm_peaks(threads: int) -> dict:
    """float32 GEMM rates (FLOP/s) with ``threads`` threads: torch.mm (MKL) and oneDNN, 2048³."""
    from quanta_core.similarity import onednn

    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {}
    for name, f in [("torch.mm (MKL)", lambda: torch.mm(a, b)), ("oneDNN", lambda: onednn.linear(a, b))]:
        f()
        best = min(_timed(f) for _ in range(5))
        rates[name] = 2 * n**3 / best
    return rates


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def truth_errors() -> dict:
    """Max |Δcos| against the float64 truth on a small GPT-NeoX overfit to losses ~1e-3 nats
    (16 tokens under 0.01 nats): exact, the original (reference), projected (vs its own sketched truth)."""
    from support.truth import float64_truth, low_loss_gptneox

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, corpus, losses = low_loss_gptneox()
        idx = np.sort(np.random.default_rng(1).choice(np.flatnonzero(losses < 0.01), 16, replace=False))
        truth = float64_truth(model, corpus, idx)
        sketched = float64_truth(model, corpus, idx, projection_dim=4096, seed=5)
        err = lambda m, t=truth: float(np.abs(m - t).max())
        return {
            "losses (nats)": (float(losses[idx].min()), float(losses[idx].max())),
            "exact": err(similarity_matrix(model, corpus, idx).matrix),
            "original (reference)": err(similarity_matrix(model, corpus, idx, method="reference").matrix),
            "projected k=4096 (vs its float64 sketch)": err(similarity_matrix(
                model, corpus, idx, method="projected", projection_dim=4096, seed=5).matrix, sketched),
        }
    finally:
        torch.set_num_threads(threads)


def gram_accuracy(device: torch.device, rows: int = 512, columns: int = 18_903_040) -> dict:
    """Gram of ``rows`` float16-stored unit rows (as the resident block holds them) and of float32
    rows, per mode, against a float64 Gram of the same rows: max |diag − 1|, max |Δ|, seconds."""
    from quanta_core.similarity.gram import gram

    gen = torch.Generator(device=device).manual_seed(0)
    common = torch.randn(columns, device=device, generator=gen)
    g = torch.linspace(-0.5, 2.0, rows, device=device)[:, None] * common
    g = g + torch.randn(rows, columns, device=device, generator=gen)
    g = g / g.norm(dim=1, keepdim=True)
    out = {}
    for dtype in (torch.float16, torch.float32):
        x = (g * 2**13).to(dtype) if dtype == torch.float16 else g
        truth = torch.zeros(rows, rows, dtype=torch.float64, device=device)
        for c in range(0, columns, 1 << 20):  # float64 Gram, in column chunks (memory)
            xc = x[:, c : c + (1 << 20)].double()
            truth += xc @ xc.T
        norms = truth.diagonal().sqrt()
        truth /= torch.outer(norms, norms)
        for mode in (["ieee", "3xtf32"] if device.type == "cuda" else ["ieee", "3xtf32-emulated"]):
            _sync(device)
            t = time.perf_counter()
            c = gram(x, mode=mode) / torch.outer(norms, norms)
            _sync(device)
            out[f"{str(dtype)[6:]} rows, {mode}"] = (float((c.diagonal() - 1).abs().max()),
                                                      float((c - truth).abs().max()), time.perf_counter() - t)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def original_gram_flops(s: int, p: int, block_len: int = ORIGINAL_BLOCK_LEN) -> float:
    blocks = [min(block_len, s - i) for i in range(0, s, block_len)]
    return sum(2.0 * bi * bj * p for i, bi in enumerate(blocks) for bj in blocks[i:])


def stratified(indices: np.ndarray, key: np.ndarray, n: int) -> np.ndarray:
    """``n`` of ``indices`` at the mid-quantiles ``(i + ½) / n`` of ``key`` (a representative subset), sorted."""
    order = np.argsort(key, kind="stable")
    n = min(n, len(indices))
    return np.sort(indices[order[((np.arange(n) + 0.5) / n * len(indices)).astype(int)]])


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=256, help="S, selected tokens")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--reference-tokens", type=int, default=16, help="tokens the reference is timed on")
    ap.add_argument("--full-reference", action="store_true", help="run the reference on all S tokens")
    ap.add_argument("--memory-budget-gib", type=float, default=None, help="exact's budget (default: from free memory)")
    ap.add_argument("--resident-dtype", default="auto")
    ap.add_argument("--max-batch", type=int, default=None)
    ap.add_argument("--batch-tokens", type=int, default=None)
    ap.add_argument("--projected-dims", default="", help="comma-separated k: projected error vs exact")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--compare-fp16", action="store_true", help="rerun exact with float32 and float16 resident copies")
    ap.add_argument("--exact-tokens", type=int, default=None,
                    help="time exact on this many of the S tokens and extrapolate (default: all)")
    ap.add_argument("--save", default=None, help="write the exact matrix to this .npy")
    ap.add_argument("--gram-mode", default="ieee", help="exact's Gram: ieee | 3xtf32 (CUDA)")
    ap.add_argument("--truth", action="store_true", help="float64-truth errors on a low-loss model, then exit")
    ap.add_argument("--gram-check", type=int, default=0, metavar="ROWS",
                    help="Gram accuracy per mode on ROWS rows against float64, then exit")
    ap.add_argument("--gram-check-columns", type=int, default=18_903_040, help="columns of --gram-check's rows")
    return ap.parse_args()


def setup(args) -> SimpleNamespace:
    """Model, corpus, the S selected tokens and the memory budget of one benchmark run."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = pythia_70m_shape(args.device)
    params = similarity_parameters(model)
    p = sum(x.numel() for _, x in params)
    corpus = synthetic_corpus(max(200, args.tokens))
    rng = np.random.default_rng(1)
    indices = np.sort(rng.choice(corpus.num_predictable, args.tokens, replace=False)).astype(np.int64)
    docs = np.searchsorted(corpus.starts, indices, side="right") - 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    run = SimpleNamespace(device=device, model=model, params=params, p=p, corpus=corpus, indices=indices,
                          docs_len=corpus.num_tokens[docs], positions=indices - corpus.starts[docs] + 1)
    run.budget = int(args.memory_budget_gib * GIB) if args.memory_budget_gib else default_memory_budget(device)
    print(f"device {device} ({name}), torch {torch.__version__}")
    print(f"model: pythia-70m shape, random weights; similarity parameters {p:,} in {len(params)} tensors")
    print(f"tokens S = {args.tokens}: mean context (exact) {run.positions.mean():.0f} tokens, "
          f"mean document (reference) {run.docs_len.mean():.0f} tokens")
    return run


def progress_printer():
    last = [0.0]

    def progress(pr):
        now = time.perf_counter()
        if now - last[0] > 15 or pr.gradients_done == pr.gradients_total:
            last[0] = now
            print(f"  … {pr.gradients_done}/{pr.gradients_total} gradients, block {pr.block + 1}/{pr.blocks}, "
                  f"{pr.rate:.2f}/s, ETA {pr.eta_seconds:.0f} s", flush=True)

    return progress


def run_exact(args, run) -> SimpleNamespace:
    """Time ``exact`` (on all S tokens or a stratified part, then extrapolated); GFLOP/s."""
    n_exact = args.exact_tokens or args.tokens
    ex_idx = run.indices if n_exact >= args.tokens else stratified(run.indices, run.positions, n_exact)
    print(f"\n[exact] memory budget {run.budget / GIB:.1f} GiB, {len(ex_idx)} tokens"
          + ("" if len(ex_idx) == args.tokens else " (quantiles of the S by context length; extrapolated below)"))
    ex = similarity_matrix(run.model, run.corpus, ex_idx, method="exact", memory_budget_bytes=run.budget,
                           resident_dtype=args.resident_dtype, max_batch=args.max_batch,
                           batch_tokens=args.batch_tokens, progress=progress_printer(), gram_mode=args.gram_mode)
    per_grad = ex.gradient_seconds / ex.gradient_computations
    print(f"  {ex.seconds:.1f} s total ({ex.gradient_seconds:.1f} s gradients, {ex.gram_seconds:.1f} s Gram), "
          f"{ex.gradient_computations} gradient computations ({ex.gradient_computations_per_token:.2f} per token), "
          f"{per_grad * 1e3:.1f} ms per gradient; resident {ex.resident_tokens} tokens × {ex.blocks} blocks "
          f"({ex.resident_dtype}), batch {ex.batch_size}, peak memory {ex.peak_memory_bytes / GIB:.2f} GiB")
    flops = gradient_flops(run.model.config, run.positions[np.isin(run.indices, ex_idx)])
    flops *= ex.gradient_computations_per_token
    print(f"  gradients: {flops / 1e9:.0f} GFLOP of matrix products (see gradient_flops) → "
          f"{flops / ex.gradient_seconds / 1e9:.0f} GFLOP/s; Gram {ex.gram_seconds:.1f} s ({args.gram_mode})")
    if run.device.type == "cpu":
        peaks = gemm_peaks(torch.get_num_threads())
        print("  float32 GEMM peak, same threads: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    m = ex.matrix
    print(f"  symmetric: {np.abs(m - m.T).max():.1e}, |diag − 1| max {np.abs(np.diag(m) - 1).max():.1e}")
    out = SimpleNamespace(result=ex, indices=ex_idx, per_grad=per_grad, count=ex.gradient_computations,
                          total=ex.seconds, measured=len(ex_idx) == args.tokens)
    if not out.measured:
        plan = plan_memory(args.tokens, run.p, run.budget, resident_dtype=args.resident_dtype,
                           max_batch=args.max_batch or (32 if run.device.type == "cuda" else 8))
        gram_rate = len(ex_idx) ** 2 * 2 * run.p / max(ex.gram_seconds, 1e-9)
        out.count = plan.gradient_computations
        out.total = out.count * per_grad + args.tokens ** 2 * 2 * run.p / gram_rate
        print(f"  extrapolated to S = {args.tokens}: {out.count} gradient computations × {per_grad:.2f} s "
              f"+ Gram at the measured {gram_rate / 1e9:.0f} GFLOP/s = {out.total:.0f} s "
              f"(resident {plan.resident_tokens} {plan.resident_dtype} × {plan.blocks} blocks)")
    if args.save:
        np.save(args.save, m)
    return out


def compare_variants(args, run, ex) -> None:
    """float16 vs float32 resident blocks, and projected vs exact, on exact's tokens."""
    m, idx = ex.result.matrix, ex.indices
    if args.compare_fp16:
        runs = {dt: similarity_matrix(run.model, run.corpus, idx, method="exact", resident_dtype=dt,
                                      memory_budget_bytes=budget_for_resident(len(idx), run.p, -(-len(idx) // 3), dt),
                                      max_batch=args.max_batch, batch_tokens=args.batch_tokens)
                for dt in ("float32", "float16")}
        d = np.abs(runs["float16"].matrix - runs["float32"].matrix)
        print(f"[float16 resident vs float32] ({runs['float16'].blocks} blocks, streamed) max |Δcos| {d.max():.2e}, "
              f"mean {d.mean():.2e}; float32 streamed vs all-resident max "
              f"{np.abs(runs['float32'].matrix - m).max():.2e}")
    for k in [int(x) for x in args.projected_dims.split(",") if x]:
        pr = similarity_matrix(run.model, run.corpus, idx, method="projected", projection_dim=k,
                               seed=0, max_batch=args.max_batch, batch_tokens=args.batch_tokens)
        err = np.abs(pr.matrix - m)[~np.eye(len(idx), dtype=bool)]
        print(f"[projected k={k}] {pr.seconds:.1f} s; |cos − exact|: mean {err.mean():.4f}, "
              f"rms {np.sqrt((err ** 2).mean()):.4f}, max {err.max():.4f}")


def run_reference(args, run, ex) -> None:
    """Time the original's loop (all S, or a stratified part extrapolated) and print the ratios."""
    full = args.full_reference
    ref_idx = run.indices if full else stratified(run.indices, run.docs_len, args.reference_tokens)
    mean_doc = run.docs_len[np.isin(run.indices, ref_idx)].mean()
    print(f"\n[reference] {'all' if full else len(ref_idx)} tokens"
          + ("" if full else f" (quantiles of the S by document length; mean document {mean_doc:.0f} tokens)"))
    ref = similarity_matrix(run.model, run.corpus, ref_idx, method="reference", progress=progress_printer())
    ref_per_grad = ref.gradient_seconds / ref.gradient_computations
    ref_count = original_gradient_computations(args.tokens)
    diag = np.abs(np.diag(ref.matrix) - 1).max()
    if full:
        ref_total = ref.seconds
        print(f"  {ref.seconds:.1f} s, {ref.gradient_computations} gradient computations, max |exact − reference| "
              f"{np.abs(ref.matrix - ex.result.matrix).max():.2e} (reference |diag − 1| max {diag:.1e}: float32 norms)")
    else:
        rate = gemm_rate(run.device, min(args.tokens, ORIGINAL_BLOCK_LEN))
        gram_s = original_gram_flops(args.tokens, run.p) / rate
        ref_total = ref_count * ref_per_grad + gram_s
        print(f"  measured {ref.gradient_computations} gradients in {ref.gradient_seconds:.1f} s; "
              f"reference |diag − 1| max {diag:.1e} (float32 norms)")
        print(f"  extrapolated to S = {args.tokens}: {ref_count} gradient computations × {ref_per_grad:.2f} s "
              f"+ Gram {gram_s:.1f} s (float32 GEMM at {rate / 1e9:.0f} GFLOP/s) = {ref_total:.0f} s")
    est = {True: "", False: " (extrapolated)"}
    print("\n| | exact | reference (original) | ratio |\n|---|---|---|---|")
    print(f"| seconds per gradient | {ex.per_grad:.3f} | {ref_per_grad:.3f} | {ref_per_grad / ex.per_grad:.1f}× |")
    print(f"| gradient computations (S = {args.tokens}) | {ex.count} | {ref_count} | {ref_count / ex.count:.2f}× |")
    print(f"| total seconds (S = {args.tokens}) | {ex.total:.1f}{est[ex.measured]} | "
          f"{ref_total:.1f}{est[full]} | {ref_total / ex.total:.1f}× |")


def print_plans(p: int, budget: int) -> None:
    print(f"\ngradient computations per token at S = 10,000 (pythia-70m, {p:,} parameters):")
    h200 = int(0.85 * 139 * GIB)
    for label, b in [("24 GiB (CPU)", 24 * GIB), ("80 GiB (GPU)", 80 * GIB), ("85 % of an H200's 139 GiB", h200),
                     (f"this run's {budget / GIB:.1f} GiB", budget)]:
        plan = plan_memory(10_000, p, b)
        print(f"  {label}: resident {plan.resident_tokens} ({plan.resident_dtype}) × {plan.blocks} blocks → "
              f"{plan.gradient_computations_per_token:.2f} per token (original: "
              f"{original_gradient_computations(10_000) / 10_000:.1f})")


def main() -> None:
    args = parse_args()
    if args.truth:
        for name, value in truth_errors().items():
            print(f"float64 truth, max |Δcos|, {name}: {value}")
        return
    if args.gram_check:
        checks = gram_accuracy(torch.device(args.device), args.gram_check, args.gram_check_columns)
        for name, (diag, delta, sec) in checks.items():
            print(f"Gram {name}: max |diag − 1| {diag:.1e}, max |Δ| vs float64 {delta:.1e}, {sec:.2f} s")
        return
    run = setup(args)
    ex = run_exact(args, run)
    compare_variants(args, run, ex)
    if not args.skip_reference:
        run_reference(args, run, ex)
    print_plans(run.p, run.budget)


if __name__ == "__main__":
    main()
