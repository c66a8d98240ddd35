"""The embedded demo suite: a small GPT-NeoX trained here on the mini-Pile, saved at Pythia's
step names into a local repository in the Hugging Face hub's own layout.

The model is Pythia's architecture at toy size: ``GPTNeoXForCausalLM``, Pythia's tokenizer and
padded vocabulary (50,304), rotary embeddings on 25% of each head, parallel residual, untied
unembedding; trained with the vocabulary the corpus uses (:mod:`quanta_core.models.demo_training`).
Training is deterministic for a given seed, corpus, configuration and thread count.

Checkpoints go to ``<hub_dir>/models--quanta--quanta-demo/snapshots/<commit>/`` (``config.json``,
``model.safetensors``, ``tokenizer.json``) with ``refs/<step>`` holding the commit, a SHA-1 of the
snapshot's content, so :func:`quanta_core.models.checkpoints.load_checkpoint` loads them exactly like
Pythia. ``quanta-demo-suite.json`` next to ``refs/`` records the settings and the summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from quanta_core.atomic import atomic_path, write_bytes
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.filters import present_trigram_flags
from quanta_core.corpus.tokenizer import offline_tokenizer_path
from quanta_core.models.checkpoints import DEMO_REPO_ID, repo_folder, write_hub_snapshot
from quanta_core.models.demo_training import (
    DEMO_STEPS,
    CompactCorpus,
    CompactModel,
    DemoSuiteConfig,
    epoch_batches,
    gptneox_config,
    learning_rate,
)
from quanta_core.presets import DEMO_MODEL, LOW_LOSS_NATS, PADDED_VOCAB
from quanta_core.steps import sorted_steps, step_number

__all__ = ["DEMO_STEPS", "PADDED_VOCAB", "DemoSuiteConfig", "demo_repo_dir", "existing_demo_suite", "settings_of",
           "train_demo_suite"]

SUMMARY_FILE = "quanta-demo-suite.json"
CODE_VERSION = "1"  # bump when training changes in a way the settings do not capture
THRESHOLDS_NATS = {"0.1_nats": LOW_LOSS_NATS, "1_bit": math.log(2.0)}  # summary statistics


def demo_repo_dir(hub_dir) -> Path:
    """``<hub_dir>/models--quanta--quanta-demo``."""
    return repo_folder(hub_dir, DEMO_REPO_ID)


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
    repo = demo_repo_dir(hub_dir)
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
        return _Training(corpus, hub_dir, config, seed, progress or (lambda message: None)).run()
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Training:
    """One training run: the compact model, the checkpoints written so far, the timings."""

    corpus: CanonicalCorpus
    hub_dir: object
    config: DemoSuiteConfig
    seed: int
    say: Callable[[str], None]
    commits: dict = field(default_factory=dict)
    curve: dict = field(default_factory=dict)
    eval_seconds: float = 0.0

    def run(self) -> dict:
        self.started = time.perf_counter()
        self.data = CompactCorpus.of(self.corpus)
        if not self.data.docs:
            raise ValueError("the corpus has no document of two or more tokens to train on")
        self.say(f"corpus: {len(self.data.docs)} documents, {int((self.data.lengths - 1).sum()):,} predictable "
                 f"tokens, {len(self.data.used):,} distinct tokens used of {PADDED_VOCAB:,}")
        torch.manual_seed(self.seed)
        self.model = CompactModel(self.config, self.data.used)
        self.files = {"config.json": _config_json(gptneox_config(self.config)),
                      "tokenizer.json": offline_tokenizer_path().read_bytes()}
        self.curve_docs = self.data.docs[:: self.config.curve_every_nth_document]
        repo = demo_repo_dir(self.hub_dir)
        with atomic_path(repo) as tmp_repo:
            tokens_trained = self._train(tmp_repo)
            summary = self._summary(tokens_trained)
            write_bytes(tmp_repo / SUMMARY_FILE, json.dumps(summary, indent=1).encode())
        summary["repo_dir"] = str(repo)
        self.say(f"done: step-0 loss {summary['step0_mean_loss']:.3f} → {summary['final_mean_loss']:.3f} nats, "
                 f"{summary['fraction_below_0.1_nats']:.1%} of tokens under 0.1 nats, "
                 f"≈{summary['qualifying_below_0.1_nats_estimated_all']:,} of them not trigram-flagged in the whole "
                 f"corpus; {time.perf_counter() - self.started:.0f} s")
        return summary

    def _checkpoint(self, repo: Path, step_name: str) -> None:
        from safetensors.torch import save

        files = {**self.files, "model.safetensors": save(self.model.full_state_dict(), metadata={"format": "pt"})}
        self.commits[step_name] = write_hub_snapshot(repo, step_name, files)
        t0 = time.perf_counter()
        self.curve[step_name] = float(self.model.evaluate(self.curve_docs).mean())
        self.eval_seconds += time.perf_counter() - t0
        self.say(f"{step_name}: curve loss {self.curve[step_name]:.3f} nats, commit {self.commits[step_name][:12]}, "
                 f"{time.perf_counter() - self.started:.0f} s")

    def _train(self, repo: Path) -> int:
        """Run every optimizer step, writing the checkpoints; returns the tokens trained on."""
        config, docs = self.config, self.data.docs
        steps = sorted_steps(set(config.steps))
        pending = [s for s in steps if step_number(s) > 0]
        if steps and step_number(steps[0]) == 0:
            self._checkpoint(repo, steps[0])
        rng, batches, tokens_trained = np.random.default_rng(self.seed), [], 0
        for step in range(1, config.num_steps + 1):
            if not batches:
                batches = epoch_batches(docs, config.batch_tokens, rng)
            batch = [docs[i] for i in batches.pop()]
            loss = self.model.train_step(batch, learning_rate(step, config))
            tokens_trained += sum(len(d) - 1 for d in batch)
            if step % 32 == 0:
                self.say(f"step {step}/{config.num_steps}: loss {loss:.3f}, lr {learning_rate(step, config):.2e}, "
                         f"{tokens_trained:,} tokens, {time.perf_counter() - self.started:.0f} s")
            while pending and step_number(pending[0]) == step:
                self._checkpoint(repo, pending.pop(0))
        self.train_seconds = time.perf_counter() - self.started - self.eval_seconds
        return tokens_trained

    def _summary(self, tokens_trained: int) -> dict:
        config, docs = self.config, self.data.docs
        t0 = time.perf_counter()
        final_losses = self.model.evaluate(docs[:: config.stats_every_nth_document])
        self.eval_seconds += time.perf_counter() - t0
        flags = present_trigram_flags(_every_nth_document(self.corpus, config.stats_every_nth_document))
        all_tokens = int((self.data.lengths - 1).sum())
        steps = sorted_steps(set(config.steps))
        return {
            "model": DEMO_MODEL,
            "repo_id": DEMO_REPO_ID,
            "steps": steps,
            "commits": self.commits,
            "curve_mean_loss": self.curve,
            "curve_tokens": int(sum(len(d) - 1 for d in self.curve_docs)),
            "predictable_tokens": all_tokens,
            "stats_tokens": int(len(final_losses)),
            "step0_mean_loss": self.curve.get("step0", float("nan")),
            "final_mean_loss": float(final_losses.mean()),
            "final_step": steps[-1],
            **_threshold_stats(final_losses, flags, all_tokens),
            "tokens_trained": int(tokens_trained),
            "epochs": round(tokens_trained / max(all_tokens, 1), 3),
            "distinct_tokens": len(self.data.used),
            "parameters": int(sum(t.numel() for t in self.model.full_state_dict().values())),
            "train_seconds": round(self.train_seconds, 1),
            "eval_seconds": round(self.eval_seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "settings": settings_of(self.corpus, config, self.seed),
        }


def _threshold_stats(losses: np.ndarray, flags: np.ndarray, all_tokens: int) -> dict:
    """Fractions of (sample) tokens under 0.1 nats / 1 bit; counts of those not trigram-flagged,
    in the sample and scaled up to the whole corpus."""
    out = {}
    for label, threshold in THRESHOLDS_NATS.items():
        low = losses < threshold
        qualifying = int((low & ~flags).sum())
        out[f"fraction_below_{label}"] = float(low.mean()) if len(low) else 0.0
        out[f"qualifying_below_{label}"] = qualifying
        out[f"qualifying_below_{label}_estimated_all"] = round(qualifying * all_tokens / max(len(losses), 1))
    return out


def _every_nth_document(corpus: CanonicalCorpus, n: int) -> CanonicalCorpus:
    """The documents of two or more tokens, every n-th of them (matching ``CompactCorpus.of(...).docs[::n]``)."""
    keep = np.flatnonzero(corpus.num_tokens >= 2)[::n]
    chunks = [corpus.document(d) for d in keep]
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(chunks) if chunks else np.zeros(0, np.uint16)
    return CanonicalCorpus(ids, offsets, corpus.documents.iloc[keep].reset_index(drop=True))
