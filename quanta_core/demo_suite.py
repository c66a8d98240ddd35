"""The embedded demo suite: a small GPT-NeoX trained here on the mini-Pile, saved at Pythia's
step names into a local repository in the Hugging Face hub's own layout.

The model is Pythia's architecture at toy size: ``GPTNeoXForCausalLM``, Pythia's tokenizer and
padded vocabulary (50,304), rotary embeddings on 25% of each head, parallel residual, untied
unembedding. Training is deterministic for a given seed, corpus, configuration and thread count.

Checkpoints go to ``<hub_dir>/models--quanta--quanta-demo/snapshots/<commit>/`` (``config.json``,
``model.safetensors``, ``tokenizer.json``) with ``refs/<step>`` holding the commit, a SHA-1 of the
snapshot's content, so :func:`quanta_core.checkpoints.load_checkpoint` loads them exactly like
Pythia. ``quanta-demo-suite.json`` next to ``refs/`` records the settings and the summary.

**Training with the vocabulary the corpus uses.** Only the K tokens occurring in the corpus
(≈13,400 of 50,304 for the mini-Pile) are ever inputs or targets. The unembedding rows of the
other M = 50,304 − K tokens start equal, and then receive identical gradients at every step, so
they stay equal: full-vocabulary training keeps them as one shared row. We train exactly that —
a model with K + 1 output rows whose last row stands for the M absent tokens (its logit counts M
times: ``+ log M``; its gradient is divided by M, as each of the M real rows would get; gradient
clipping counts it M times) — and write the full 50,304-row model at every checkpoint. The
saved model's cross-entropy over the full vocabulary equals the training loss; the softmax costs
K/50,304 ≈ 27% of the full one. Input-embedding rows of absent tokens keep their random init
(they are never looked up).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .atomic import atomic_path, write_bytes
from .canonical import CanonicalCorpus
from .checkpoints import DEMO_MODEL, DEMO_REPO_ID, repo_folder, write_hub_snapshot
from .filters import present_trigram_flags
from .tokenizer import offline_tokenizer_path

PADDED_VOCAB = 50304  # Pythia's padded vocabulary (the tokenizer has 50,277 entries)
DEMO_STEPS: list[str] = [f"step{s}" for s in (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)]
SUMMARY_FILE = "quanta-demo-suite.json"
CODE_VERSION = "1"  # bump when training changes in a way the settings do not capture
NATS_THRESHOLD = 0.1  # the analysis threshold (the original's 0.1442695 bits = 0.1 nats)
BIT_THRESHOLD = math.log(2.0)  # 1 bit in nats


@dataclass(frozen=True)
class DemoSuiteConfig:
    """Model size and training schedule. ``steps``: checkpoint names; the last one's number is
    the number of optimizer steps. ``batch_tokens``: padded tokens per optimizer step (documents
    of similar length are batched together; a longer document is a batch of its own)."""

    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    steps: tuple[str, ...] = tuple(DEMO_STEPS)
    batch_tokens: int = 1024
    learning_rate: float = 6e-3
    warmup_steps: int = 16
    final_lr_fraction: float = 0.1  # cosine decay to this fraction of the peak
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float = 1.0
    max_positions: int = 2048  # Pythia's
    curve_every_nth_document: int = 40  # loss at every checkpoint (step-0 mean loss) on every n-th document
    stats_every_nth_document: int = 8  # final loss and threshold fractions on every n-th document
    num_threads: int | None = 1  # torch CPU threads while training (1: reproducible commits, and
    # fastest on a shared 2-core machine); None: leave torch's setting

    @property
    def num_steps(self) -> int:
        return max(_step_number(s) for s in self.steps)


@dataclass
class _Compact:
    """The corpus over the used vocabulary. ``used``: sorted token ids that occur, int64 [K]."""

    used: np.ndarray
    docs: list[np.ndarray] = field(default_factory=list)  # compact ids per document (≥ 2 tokens)


def _step_number(step: str) -> int:
    if not step.startswith("step") or not step[4:].isdigit():
        raise ValueError(f"not a Pythia step name: {step!r}")
    return int(step[4:])


def gptneox_config(cfg: DemoSuiteConfig, vocab_size: int = PADDED_VOCAB):
    """The demo model's ``GPTNeoXConfig`` (Pythia's architecture choices, toy size)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=cfg.max_positions,
        rotary_pct=0.25,
        rotary_emb_base=10000,
        use_parallel_residual=True,
        tie_word_embeddings=False,
        hidden_act="gelu",
        layer_norm_eps=1e-5,
        initializer_range=0.02,
        bos_token_id=0,
        eos_token_id=0,
        architectures=["GPTNeoXForCausalLM"],
    )


def _config_json(config) -> bytes:
    """``config.json`` as transformers writes it, plus Pythia's own rotary keys (``rotary_pct``,
    ``rotary_emb_base``) so that older transformers versions read the same architecture."""
    data = json.loads(config.to_json_string(use_diff=False))
    data.setdefault("rotary_pct", 0.25)
    data.setdefault("rotary_emb_base", 10000)
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def corpus_fingerprint(corpus: CanonicalCorpus) -> str:
    """SHA-256 of the corpus' token ids and document offsets."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(corpus.ids, dtype=np.uint16).tobytes())
    h.update(np.ascontiguousarray(corpus.offsets, dtype=np.int64).tobytes())
    return h.hexdigest()


def settings_of(corpus: CanonicalCorpus, cfg: DemoSuiteConfig, seed: int) -> dict:
    settings = {**asdict(cfg), "seed": seed, "corpus_sha256": corpus_fingerprint(corpus), "code_version": CODE_VERSION}
    settings["steps"] = list(cfg.steps)
    settings["betas"] = list(cfg.betas)
    settings["settings_sha256"] = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    return settings


def existing_demo_suite(hub_dir, corpus: CanonicalCorpus, cfg: DemoSuiteConfig = DemoSuiteConfig(), seed: int = 0):
    """The summary of an already trained suite with the same settings, or ``None``."""
    repo = repo_folder(hub_dir, DEMO_REPO_ID)
    try:
        summary = json.loads((repo / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if summary.get("settings", {}).get("settings_sha256") != settings_of(corpus, cfg, seed)["settings_sha256"]:
        return None
    for step, commit in summary.get("commits", {}).items():
        ref = repo / "refs" / step
        if not ref.is_file() or ref.read_text().strip() != commit:
            return None
        if not (repo / "snapshots" / commit / "model.safetensors").is_file():
            return None
    return summary


# -- data -----------------------------------------------------------------------------------------


def _compact(corpus: CanonicalCorpus) -> _Compact:
    ids = np.asarray(corpus.ids, dtype=np.int64)
    used = np.unique(ids)
    remap = np.full(PADDED_VOCAB, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    docs = [remap[ids[a:b]] for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:]) if b - a >= 2]
    return _Compact(used=used, docs=docs)


def _batches(docs: list[np.ndarray], batch_tokens: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of batches (document indices): shuffled, then length-sorted within windows of
    64 documents so padding is small, batches filled up to ``batch_tokens`` padded tokens, and
    the batch order shuffled."""
    order = rng.permutation(len(docs))
    batches: list[list[int]] = []
    for w in range(0, len(order), 64):
        window = sorted(order[w : w + 64], key=lambda i: len(docs[i]))
        current: list[int] = []
        for i in window:
            if current and len(docs[i]) * (len(current) + 1) > batch_tokens:
                batches.append(current)
                current = []
            current.append(int(i))
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


def _pad(docs: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask, int64 ``[B, L]``."""
    length = max(len(d) for d in docs)
    ids = torch.zeros(len(docs), length, dtype=torch.long)
    mask = torch.zeros(len(docs), length, dtype=torch.long)
    for row, doc in enumerate(docs):
        ids[row, : len(doc)] = torch.from_numpy(doc)
        mask[row, : len(doc)] = 1
    return ids, mask


# -- the compact model ----------------------------------------------------------------------------


def _token_losses(model, docs: list[np.ndarray], log_m: float) -> torch.Tensor:
    """Per-token cross-entropy (nats) over the full vocabulary, documents' predictable tokens in
    order, float32 ``[sum(len − 1)]``. ``model`` is the compact model (row K = the absent tokens)."""
    ids, mask = _pad(docs)
    hidden = model.gpt_neox(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask[:, 1:].bool()
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    offset = torch.zeros(logits.shape[1], dtype=logits.dtype)
    offset[-1] = log_m
    return torch.nn.functional.cross_entropy(logits + offset, ids[:, 1:][keep], reduction="none")


@torch.no_grad()
def _evaluate(model, docs: list[np.ndarray], log_m: float, batch_tokens: int = 1024) -> np.ndarray:
    """Losses of every predictable token of ``docs`` (in document order), float32. Documents are
    run longest first, in batches of at most ``batch_tokens`` padded tokens, so padding is small."""
    model.eval()
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))
    per_doc: list = [None] * len(docs)
    start = 0
    while start < len(order):
        rows = max(1, batch_tokens // len(docs[order[start]]))
        chunk = order[start : start + rows]
        losses = _token_losses(model, [docs[i] for i in chunk], log_m)
        for i, part in zip(chunk, torch.split(losses, [len(docs[i]) - 1 for i in chunk])):
            per_doc[i] = part
        start += rows
    model.train()
    return torch.cat(per_doc).numpy() if per_doc else np.zeros(0, np.float32)


def _full_state_dict(compact, used: np.ndarray, embed_in_init: torch.Tensor) -> dict[str, torch.Tensor]:
    """The 50,304-row model's weights, under Pythia's checkpoint names (``embed_out.weight``)."""
    used_t = torch.from_numpy(used)
    state = {}
    for name, tensor in compact.state_dict().items():
        tensor = tensor.detach()
        if name == "gpt_neox.embed_in.weight":
            full = embed_in_init.clone()
            full[used_t] = tensor[: len(used)]
            state[name] = full
        elif name in ("lm_head.weight", "embed_out.weight"):
            full = tensor[-1:].repeat(PADDED_VOCAB, 1)
            full[used_t] = tensor[: len(used)]
            state["embed_out.weight"] = full
        else:
            state[name] = tensor.clone()
    return {k: v.contiguous() for k, v in state.items()}


def _snapshot_files(state: dict[str, torch.Tensor], config_json: bytes, tokenizer_json: bytes) -> dict[str, bytes]:
    from safetensors.torch import save

    return {
        "config.json": config_json,
        "model.safetensors": save(state, metadata={"format": "pt"}),
        "tokenizer.json": tokenizer_json,
    }


# -- training -------------------------------------------------------------------------------------


def _lr(step: int, cfg: DemoSuiteConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` at the last step (1-based)."""
    if step <= cfg.warmup_steps:
        return cfg.learning_rate * step / max(cfg.warmup_steps, 1)
    span = max(cfg.num_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.final_lr_fraction
    return cfg.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def train_demo_suite(
    corpus: CanonicalCorpus,
    hub_dir,
    config: DemoSuiteConfig = DemoSuiteConfig(),
    *,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Train the demo model on ``corpus`` and write a checkpoint at each of ``config.steps`` into
    ``<hub_dir>/models--quanta--quanta-demo`` (replacing it as a whole, atomically).

    Returns (and stores as ``quanta-demo-suite.json``) a summary: commits per step; mean loss
    (nats) per step on the curve sample (every ``curve_every_nth_document``-th document); on the
    stats sample (every ``stats_every_nth_document``-th document, to keep evaluation cheap):
    final mean loss, the fraction of tokens under 0.1 nats and under 1 bit, how many of those
    the present-trigram filter does not flag (and that count scaled to the whole corpus); the
    step-0 mean loss is the curve sample's; timings and the settings. The pipeline's
    ``pile_losses`` gives exact per-token losses over the whole corpus later.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    try:
        return _train(corpus, hub_dir, config, seed, progress or (lambda message: None))
    finally:
        torch.set_num_threads(threads)


def _train(corpus: CanonicalCorpus, hub_dir, config: DemoSuiteConfig, seed: int, say: Callable[[str], None]) -> dict:
    from transformers import GPTNeoXForCausalLM

    started = time.perf_counter()
    steps = sorted(set(config.steps), key=_step_number)
    settings = settings_of(corpus, config, seed)
    data = _compact(corpus)
    if not data.docs:
        raise ValueError("the corpus has no document of two or more tokens to train on")
    k, m = len(data.used), PADDED_VOCAB - len(data.used)
    if data.used.max() >= PADDED_VOCAB:
        raise ValueError(f"token id {int(data.used.max())} outside the padded vocabulary {PADDED_VOCAB}")
    log_m = math.log(m) if m > 0 else -math.inf
    say(f"corpus: {len(data.docs)} documents, {sum(len(d) - 1 for d in data.docs):,} predictable tokens, "
        f"{k:,} distinct tokens used of {PADDED_VOCAB:,}")

    torch.manual_seed(seed)
    full_config = gptneox_config(config)
    embed_in_init = torch.empty(PADDED_VOCAB, config.hidden_size).normal_(0.0, full_config.initializer_range)
    compact = GPTNeoXForCausalLM(gptneox_config(config, vocab_size=k + 1))
    with torch.no_grad():  # absent tokens: one shared row (start as the M equal rows would)
        compact.get_input_embeddings().weight[:k] = embed_in_init[torch.from_numpy(data.used)]
    absent_row_scale = torch.ones(k + 1, 1)
    absent_row_scale[-1] = 1.0 / max(m, 1)
    head = compact.get_output_embeddings().weight
    head.register_hook(lambda grad: grad * absent_row_scale)
    compact.train()
    decay = [p for n, p in compact.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in compact.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate, betas=config.betas,
    )
    config_json = _config_json(full_config)
    tokenizer_json = offline_tokenizer_path().read_bytes()
    curve_docs = data.docs[:: config.curve_every_nth_document]
    stats_docs = data.docs[:: config.stats_every_nth_document]
    stats_corpus = _every_nth_document(corpus, config.stats_every_nth_document)
    rng = np.random.default_rng(seed)
    repo = repo_folder(hub_dir, DEMO_REPO_ID)
    commits, curve, tokens_trained, epoch_batches = {}, {}, 0, []
    eval_seconds = 0.0

    with atomic_path(repo) as tmp_repo:

        def checkpoint(step_name: str) -> None:
            nonlocal eval_seconds
            state = _full_state_dict(compact, data.used, embed_in_init)
            commits[step_name] = write_hub_snapshot(tmp_repo, step_name, _snapshot_files(state, config_json, tokenizer_json))
            t0 = time.perf_counter()
            curve[step_name] = float(_evaluate(compact, curve_docs, log_m).mean())
            eval_seconds += time.perf_counter() - t0
            say(f"{step_name}: curve loss {curve[step_name]:.3f} nats, commit {commits[step_name][:12]}, "
                f"{time.perf_counter() - started:.0f} s")

        pending = [s for s in steps if _step_number(s) > 0]
        if steps and _step_number(steps[0]) == 0:
            checkpoint(steps[0])
        for step in range(1, config.num_steps + 1):
            if not epoch_batches:
                epoch_batches = _batches(data.docs, config.batch_tokens, rng)
            batch = [data.docs[i] for i in epoch_batches.pop()]
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, config)
            loss = _token_losses(compact, batch, log_m).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _clip_counting_absent(compact, head, m, config.max_grad_norm)
            optimizer.step()
            tokens_trained += sum(len(d) - 1 for d in batch)
            if step % 32 == 0:
                say(f"step {step}/{config.num_steps}: loss {loss.item():.3f}, lr {_lr(step, config):.2e}, "
                    f"{tokens_trained:,} tokens, {time.perf_counter() - started:.0f} s")
            while pending and _step_number(pending[0]) == step:
                checkpoint(pending.pop(0))
        train_seconds = time.perf_counter() - started - eval_seconds

        t0 = time.perf_counter()
        final_losses = _evaluate(compact, stats_docs, log_m)
        eval_seconds += time.perf_counter() - t0
        flags = present_trigram_flags(stats_corpus)
        all_tokens = sum(len(d) - 1 for d in data.docs)
        summary = {
            "model": DEMO_MODEL,
            "repo_id": DEMO_REPO_ID,
            "steps": steps,
            "commits": commits,
            "curve_mean_loss": curve,
            "curve_tokens": int(sum(len(d) - 1 for d in curve_docs)),
            "predictable_tokens": int(all_tokens),
            "stats_tokens": int(len(final_losses)),
            "step0_mean_loss": curve.get("step0", float("nan")),
            "final_mean_loss": float(final_losses.mean()),
            "final_step": steps[-1],
            **_threshold_stats(final_losses, flags, all_tokens),
            "tokens_trained": int(tokens_trained),
            "epochs": round(tokens_trained / max(all_tokens, 1), 3),
            "distinct_tokens": k,
            "parameters": int(sum(t.numel() for t in _full_state_dict(compact, data.used, embed_in_init).values())),
            "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "settings": settings,
        }
        write_bytes(tmp_repo / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
    summary["repo_dir"] = str(repo)
    say(f"done: step-0 loss {summary['step0_mean_loss']:.3f} → {summary['final_mean_loss']:.3f} nats, "
        f"{summary['fraction_below_0.1_nats']:.1%} of tokens under 0.1 nats, "
        f"≈{summary['qualifying_below_0.1_nats_estimated_all']:,} of them not trigram-flagged in the whole corpus; "
        f"{time.perf_counter() - started:.0f} s")
    return summary


def _threshold_stats(losses: np.ndarray, flags: np.ndarray, all_tokens: int) -> dict:
    """Fractions of (sample) tokens under 0.1 nats / 1 bit; counts of those not trigram-flagged,
    in the sample and scaled up to the whole corpus."""
    out = {}
    for label, threshold in (("0.1_nats", NATS_THRESHOLD), ("1_bit", BIT_THRESHOLD)):
        low = losses < threshold
        qualifying = int((low & ~flags).sum())
        out[f"fraction_below_{label}"] = float(low.mean()) if len(low) else 0.0
        out[f"qualifying_below_{label}"] = qualifying
        out[f"qualifying_below_{label}_estimated_all"] = round(qualifying * all_tokens / max(len(losses), 1))
    return out


def _every_nth_document(corpus: CanonicalCorpus, n: int) -> CanonicalCorpus:
    """The documents of two or more tokens, every n-th of them (matching ``_compact(...).docs[::n]``)."""
    keep = np.flatnonzero(corpus.num_tokens >= 2)[::n]
    chunks = [corpus.document(d) for d in keep]
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(chunks) if chunks else np.zeros(0, np.uint16)
    return CanonicalCorpus(ids, offsets, corpus.documents.iloc[keep].reset_index(drop=True))


def _clip_counting_absent(model, head: torch.Tensor, m: int, max_norm: float) -> None:
    """Clip the global gradient norm as the full model would compute it: the shared absent-token
    row stands for M rows, each with this (already 1/M-scaled) gradient."""
    if max_norm <= 0:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    total_sq = sum(float(g.pow(2).sum()) for g in grads)
    if m > 1:
        total_sq += (m - 1) * float(head.grad[-1].pow(2).sum())
    norm = math.sqrt(total_sq)
    if norm > max_norm:
        for g in grads:
            g.mul_(max_norm / (norm + 1e-6))
