"""Benchmark: ``quanta_core.models.losses.token_losses`` against the original's per-document loop.

The original (``scripts/evaluate_pile_losses.py``) ran, for each document on its own, a full
forward pass with autograd on (``model(**tokens).logits``, the whole ``[1, n, vocab]`` float32
logits), then ``F.cross_entropy(logits[0, :-1], ids[1:], reduction="none").tolist()``, and
flattened the per-document lists at the end. ``original_losses`` below re-implements exactly that
loop on pre-tokenized ids (the original also re-tokenized each document inside the loop; leaving
that out only makes the baseline faster).

Both run on the same machine, the same model — a pythia-70m-shaped GPT-NeoX with random weights
(hidden 512, 6 layers, 8 heads, vocab 50,304, rotary 25 %, parallel residual) — and the same
documents: random token ids with Pile-like lengths (half the documents truncated at 1,024 tokens,
the rest log-uniform in [16, 1024]; mean ≈ 630 tokens), and the two loss tables are compared.

    python benchmarks/bench_losses.py                      # CPU, quick (< 3 minutes)
    python benchmarks/bench_losses.py --device cuda --documents 2000 --dtype bfloat16

Prints tokens/s of each, the ratio, and the projected time of a 20,000-document run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.models.losses import default_batching, token_losses

RUN_DOCUMENTS = 20_000  # the original's run


def pythia_70m_shaped(seed: int = 0):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=50_304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
        max_position_embeddings=2048, rotary_pct=0.25, rotary_emb_base=10_000, use_parallel_residual=True,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(config).eval()


def pile_like_corpus(num_documents: int, seed: int = 0) -> CanonicalCorpus:
    rng = np.random.default_rng(seed)
    truncated = rng.random(num_documents) < 0.5
    lengths = np.where(truncated, 1024, np.exp(rng.uniform(np.log(16), np.log(1024), num_documents))).astype(np.int64)
    ids = rng.integers(0, 50_277, int(lengths.sum())).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return CanonicalCorpus(ids, offsets, pd.DataFrame({"num_tokens": lengths, "num_predictable": lengths - 1}))


def original_losses(model, corpus: CanonicalCorpus, device) -> np.ndarray:
    """The original's loop: one document per forward pass, autograd on, full logits."""
    results = []
    for d in range(corpus.num_documents):
        doc = corpus.document(d)
        if len(doc):
            input_ids = torch.tensor(doc.astype(np.int64), device=device)[None]
            logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
            ls = F.cross_entropy(logits[0, :-1, :], input_ids[0, 1:], reduction="none")
            results.append(ls.tolist())
        else:
            results.append([])
    flat = torch.zeros(sum(len(r) for r in results), dtype=torch.float32)
    j = 0
    for x in results:
        flat[j : j + len(x)] = torch.tensor(x, dtype=torch.float32)
        j += len(x)
    return flat.numpy()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(device: torch.device, fn):
    """(result, wall seconds, process CPU seconds) of ``fn()``."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    _sync(device)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--documents", type=int, default=24, help="documents for the platform run")
    parser.add_argument("--original-documents", type=int, default=None,
                        help="documents for the original loop (default: same as --documents)")
    parser.add_argument("--dtype", default="float32", help="platform dtype (the original ran float32)")
    parser.add_argument("--batch-tokens", type=int, default=None, help="default: by device (quanta_core.models.losses)")
    parser.add_argument("--logits-chunk", type=int, default=None, help="default: by device (quanta_core.models.losses)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    default_tokens, default_chunk = default_batching(device)
    args.batch_tokens = args.batch_tokens or default_tokens
    args.logits_chunk = args.logits_chunk or default_chunk
    model = pythia_70m_shaped().to(device)
    corpus = pile_like_corpus(args.documents)
    n_orig = min(args.original_documents or args.documents, args.documents)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"device {device} ({where}), "
          f"model pythia-70m shape, random weights; {corpus.num_documents} documents, "
          f"{len(corpus.ids):,} tokens (mean {len(corpus.ids) / corpus.num_documents:.0f}/doc)")

    # warm-up (kernels, allocator) on two documents, not timed
    batching = {"batch_tokens": args.batch_tokens, "logits_chunk": args.logits_chunk, "dtype": dtype}
    token_losses(model, corpus.first(2), **batching)
    model.to(dtype=torch.float32)
    original_losses(model, corpus.first(2), device)

    sub = corpus.first(n_orig)
    (reference, t_orig, cpu_orig) = _timed(device, lambda: original_losses(model, sub, device))
    (ours, t_ours, cpu_ours) = _timed(device, lambda: token_losses(model, corpus, **batching))
    orig_rate, rate = len(reference) / t_orig, len(ours) / t_ours
    diff = float(np.abs(ours[: len(reference)] - reference).max())

    per_doc = len(ours) / corpus.num_documents
    print(f"original loop (fp32, autograd on, 1 doc/pass): {len(reference):,} tokens in {t_orig:.1f} s wall "
          f"= {orig_rate:,.0f} tokens/s ({cpu_orig:.1f} s CPU)")
    print(f"platform token_losses ({args.dtype}, batch_tokens {args.batch_tokens}, logits_chunk {args.logits_chunk}): "
          f"{len(ours):,} tokens in {t_ours:.1f} s wall = {rate:,.0f} tokens/s ({cpu_ours:.1f} s CPU)")
    print(f"speed-up (wall tokens/s): {rate / orig_rate:.2f}x")
    if device.type == "cpu":
        print(f"speed-up (CPU-time tokens/s, less sensitive to other load on the machine): "
              f"{(len(ours) / cpu_ours) / (len(reference) / cpu_orig):.2f}x")
    print(f"max |platform - original| over the same tokens: {diff:.2e} nats")
    run_tokens = RUN_DOCUMENTS * per_doc
    print(f"projected {RUN_DOCUMENTS:,}-document run ({run_tokens / 1e6:.1f}M predictable tokens): "
          f"platform {run_tokens / rate / 60:.1f} min, original {run_tokens / orig_rate / 60:.1f} min")


if __name__ == "__main__":
    main()
