"""Helpers shared by the tests: tiny GPT-NeoX models, a hub-layout checkpoint writer, the cache
resources. Import with ``from support.helpers import …`` (pytest puts tests/ on the path:
``pythonpath`` in pyproject.toml)."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[2]
"""The repository root (tests run from any directory)."""


def make_tiny_gptneox(vocab_size: int = 512, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
                      max_positions: int = 1024, parallel_residual: bool = True):
    """A tiny random GPT-NeoX (Pythia's architecture: rotary 25%, parallel residual unless
    ``parallel_residual=False``), eval mode, fp32."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    config = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=max_positions, rotary_pct=0.25,
        use_parallel_residual=parallel_residual, tie_word_embeddings=False,
    )
    model = GPTNeoXForCausalLM(config).eval()
    # random layer-norm weights/biases, so tests would notice a parameter being left out
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def write_hub_revision(hub, repo_id: str, revision: str, model) -> str:
    """Put ``model`` (+ the offline tokenizer) into ``hub`` exactly as huggingface_hub lays out a
    download: ``blobs/<sha256>``, ``snapshots/<commit>/<file>`` symlinks, ``refs/<revision>``."""
    from quanta_core.corpus.tokenizer import offline_tokenizer_path

    staging = hub.parent / f"staging-{revision}-{time.perf_counter_ns()}"
    model.save_pretrained(staging, safe_serialization=True)
    shutil.copy(offline_tokenizer_path(), staging / "tokenizer.json")
    files = {p.name: p.read_bytes() for p in staging.iterdir() if p.is_file()}
    shutil.rmtree(staging)
    weights = files["model.safetensors"]
    commit = hashlib.sha1(repo_id.encode() + revision.encode() + files["config.json"] + weights[:4096]
                          + hashlib.sha256(weights).digest()).hexdigest()
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (repo / "blobs" / blob).write_bytes(data)
        (repo / "snapshots" / commit / name).symlink_to(f"../../blobs/{blob}")
    (repo / "refs" / revision).write_text(commit)
    return commit


def write_demo_checkpoint(cache_dir, step: str, model) -> str:
    """``model`` as the demo suite's checkpoint ``step``, in ``<cache>/hub`` (where the stages load
    ``quanta-demo`` from); returns the commit."""
    from quanta_core.paths import hub_dir

    hub = hub_dir(cache_dir)
    hub.mkdir(parents=True, exist_ok=True)
    return write_hub_revision(hub, "quanta/quanta-demo", step, model)


def cache_resources(cache_dir) -> dict:
    """The ``cache`` and ``io_manager`` resources over ``cache_dir``."""
    from quanta_assets.io_manager import QuantaIOManager
    from quanta_assets.resources import QuantaCache

    cache = QuantaCache(root=str(cache_dir))
    return {"cache": cache, "io_manager": QuantaIOManager(cache=cache)}


def corpus_of_documents(docs):
    """A CanonicalCorpus of the given token-id lists."""
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    ids = np.concatenate([np.asarray(d, dtype=np.uint16) for d in docs]) if docs else np.zeros(0, np.uint16)
    return _corpus(ids, lengths)


def _corpus(ids, lengths):
    from quanta_core.corpus.canonical import CanonicalCorpus

    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    table = pd.DataFrame({"num_tokens": lengths, "num_predictable": np.maximum(lengths - 1, 0)})
    return CanonicalCorpus(ids, offsets, table)


def corpus_from_lengths(lengths, vocab: int = 50_304, seed: int = 0):
    """A CanonicalCorpus of random token ids (< ``vocab``) with the given document lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths, dtype=np.int64)
    return _corpus(rng.integers(0, vocab, int(lengths.sum())).astype(np.uint16), lengths)


def naive_ngram_flags(docs, n: int):
    """The original scripts' loop: per document, a set of the n-grams seen so far (bool [G])."""

    out = []
    for doc in docs:
        doc = [int(t) for t in doc]
        seen = set()
        for i in range(1, len(doc)):
            if i < n - 1:
                out.append(False)  # no n-gram ends here (position 1 for trigrams)
                continue
            gram = tuple(doc[i - n + 1 : i + 1])
            out.append(gram in seen)
            seen.add(gram)
    return np.array(out, dtype=bool)


def random_documents(num_docs, max_len, alphabet, seed):
    """Random token-id lists, the first four being edge cases (empty, one token, repeats)."""

    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, alphabet, rng.integers(0, max_len + 1)) for _ in range(num_docs)]
    docs[:4] = [[], [7], [7, 7], [3, 3, 3, 3, 3]]
    return docs


def train_tiny_suite(corpus, hub, hidden: int, steps, evaluate=None, layers: int = 1, heads: int = 2) -> dict:
    """Train a tiny demo-suite GPT-NeoX (hidden size ``hidden``) on ``corpus`` with a checkpoint at
    each of ``steps`` into ``hub`` (hub layout, repository quanta/quanta-demo); returns, for each
    step of ``evaluate`` (default: all), ``(per-token losses float32 [G] nats, parameter count from
    torch, snapshot dir)``."""
    from quanta_core.models.checkpoints import load_checkpoint, resolve_checkpoint
    from quanta_core.models.demo_suite import DemoSuiteConfig, train_demo_suite
    from quanta_core.models.losses import token_losses

    config = DemoSuiteConfig(hidden_size=hidden, num_layers=layers, num_heads=heads, steps=tuple(steps),
                             batch_tokens=512, warmup_steps=4, learning_rate=1e-2, curve_every_nth_document=6,
                             stats_every_nth_document=6)
    train_demo_suite(corpus, hub, config, seed=0)
    out = {}
    for step in steps if evaluate is None else evaluate:
        model = load_checkpoint("quanta-demo", step, hub_cache_dir=hub, device="cpu").model
        snapshot = resolve_checkpoint("quanta-demo", step, cache_dir=hub, offline=True)[2]
        out[step] = (token_losses(model, corpus), sum(p.numel() for p in model.parameters()), snapshot)
    return out


def tiny_minipile_corpus(directory, documents: int = 24):
    """The first ``documents`` documents of the embedded mini-Pile as a CanonicalCorpus (Pythia's tokenizer)."""
    from quanta_core.corpus.canonical import build_canonical
    from quanta_core.corpus.minipile import minipile_documents
    from quanta_core.corpus.pile import read_pile, write_pile
    from quanta_core.corpus.tokenizer import load_tokenizer

    pile = write_pile(Path(directory) / "mini.jsonl.zst", minipile_documents(40)[:documents])
    return build_canonical(read_pile(pile), load_tokenizer())


def planted_cosines(num_samples: int, num_clusters: int, dim: int, noise: float, seed: int = 0):
    """Cosine matrix (float32 ``[S, S]``) of unit vectors scattered around ``num_clusters`` random
    centres in ``dim`` dimensions (Gaussian ``noise``), and the planted labels (int ``[S]``)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_clusters, num_samples)
    centres = rng.normal(size=(num_clusters, dim))
    x = centres[labels] + noise * rng.normal(size=(num_samples, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x @ x.T).astype(np.float32), labels
