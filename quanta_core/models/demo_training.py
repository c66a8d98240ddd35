"""Training the demo GPT-NeoX with the vocabulary the corpus uses (see :mod:`quanta_core.models.demo_suite`).

Only the K tokens occurring in the corpus are ever inputs or targets. The unembedding rows of the
other M = 50,304 − K tokens start equal and receive identical gradients, so they stay equal: the
compact model keeps them as one shared row K whose logit counts M times (``+ log M``), whose
gradient is divided by M (as each real row would get) and which counts M times in gradient
clipping. :meth:`CompactModel.full_state_dict` writes the equivalent 50,304-row model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.models.batching import length_batches
from quanta_core.presets import PADDED_VOCAB
from quanta_core.steps import PYTHIA_STEPS, step_number

DEMO_STEPS: list[str] = [s for s in PYTHIA_STEPS if step_number(s) <= 512]
"""The demo suite's checkpoints: Pythia's step names step0, step1, step2, step4, …, step512."""


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
        return max(step_number(s) for s in self.steps)


def gptneox_config(cfg: DemoSuiteConfig, vocab_size: int = PADDED_VOCAB):
    """The demo model's ``GPTNeoXConfig`` (Pythia's architecture choices, toy size)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=cfg.max_positions, rotary_pct=0.25, rotary_emb_base=10000,
        use_parallel_residual=True, tie_word_embeddings=False, hidden_act="gelu", layer_norm_eps=1e-5,
        initializer_range=0.02, bos_token_id=0, eos_token_id=0, architectures=["GPTNeoXForCausalLM"],
    )


def learning_rate(step: int, cfg: DemoSuiteConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` at the last step (1-based)."""
    if step <= cfg.warmup_steps:
        return cfg.learning_rate * step / max(cfg.warmup_steps, 1)
    span = max(cfg.num_steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.final_lr_fraction
    return cfg.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# -- data -----------------------------------------------------------------------------------------


@dataclass
class CompactCorpus:
    """The corpus over the used vocabulary. ``used``: sorted token ids that occur, int64 [K];
    ``docs``: compact ids of each document with ≥ 2 tokens."""

    used: np.ndarray
    docs: list[np.ndarray]

    @classmethod
    def of(cls, corpus: CanonicalCorpus) -> CompactCorpus:
        ids = np.asarray(corpus.ids, dtype=np.int64)
        used = np.unique(ids)
        if len(used) and used.max() >= PADDED_VOCAB:
            raise ValueError(f"token id {int(used.max())} outside the padded vocabulary {PADDED_VOCAB}")
        remap = np.full(PADDED_VOCAB, -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        docs = [remap[ids[a:b]] for a, b in zip(corpus.offsets[:-1], corpus.offsets[1:]) if b - a >= 2]
        return cls(used=used, docs=docs)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(d) for d in self.docs], dtype=np.int64)


def epoch_batches(docs: list[np.ndarray], batch_tokens: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of batches (document indices): shuffled, then length-sorted within windows of
    64 documents so padding is small, batches filled up to ``batch_tokens`` padded tokens, and
    the batch order shuffled."""
    order = rng.permutation(len(docs))
    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    batches: list[list[int]] = []
    for w in range(0, len(order), 64):
        window = np.array(sorted(order[w : w + 64], key=lambda i: lengths[i]), dtype=np.int64)
        batches += [b.tolist() for b in length_batches(window, lengths, max_tokens=batch_tokens)]
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


class CompactModel:
    """The demo GPT-NeoX over K used tokens + one shared row for the M absent ones.

    Built exactly as full-vocabulary training would start (seeded by the caller with
    ``torch.manual_seed``): the 50,304 input-embedding rows are drawn first, then the compact
    model; its used rows take the full model's values.
    """

    def __init__(self, config: DemoSuiteConfig, used: np.ndarray):
        from transformers import GPTNeoXForCausalLM

        self.config, self.used = config, used
        k = len(used)
        self.absent = PADDED_VOCAB - k
        self.log_m = math.log(self.absent) if self.absent > 0 else -math.inf
        full = gptneox_config(config)
        self.embed_in_init = torch.empty(PADDED_VOCAB, config.hidden_size).normal_(0.0, full.initializer_range)
        self.model = GPTNeoXForCausalLM(gptneox_config(config, vocab_size=k + 1))
        with torch.no_grad():  # absent tokens: one shared row (start as the M equal rows would)
            self.model.get_input_embeddings().weight[:k] = self.embed_in_init[torch.from_numpy(used)]
        scale = torch.ones(k + 1, 1)
        scale[-1] = 1.0 / max(self.absent, 1)
        self.head = self.model.get_output_embeddings().weight
        self.head.register_hook(lambda grad: grad * scale)
        self.model.train()
        params = list(self.model.named_parameters())
        self.optimizer = torch.optim.AdamW(
            [{"params": [p for _, p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
             {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0}],
            lr=config.learning_rate, betas=config.betas,
        )

    def token_losses(self, docs: list[np.ndarray]) -> torch.Tensor:
        """Per-token cross-entropy (nats) over the full vocabulary, documents' predictable tokens
        in order, float32 ``[sum(len − 1)]``."""
        ids, mask = _pad(docs)
        hidden = self.model.gpt_neox(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = mask[:, 1:].bool()
        logits = self.model.get_output_embeddings()(hidden[:, :-1][keep])
        offset = torch.zeros(logits.shape[1], dtype=logits.dtype)
        offset[-1] = self.log_m
        return torch.nn.functional.cross_entropy(logits + offset, ids[:, 1:][keep], reduction="none")

    @torch.no_grad()
    def evaluate(self, docs: list[np.ndarray], batch_tokens: int = 1024) -> np.ndarray:
        """Losses of every predictable token of ``docs`` (in document order), float32; documents
        run longest first, at most ``batch_tokens`` padded tokens per batch."""
        self.model.eval()
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        order = np.array(sorted(range(len(docs)), key=lambda i: -lengths[i]), dtype=np.int64)
        per_doc: list = [None] * len(docs)
        for chunk in length_batches(order, lengths, max_tokens=batch_tokens):
            losses = self.token_losses([docs[i] for i in chunk])
            for i, part in zip(chunk, torch.split(losses, [int(lengths[i]) - 1 for i in chunk])):
                per_doc[i] = part
        self.model.train()
        return torch.cat(per_doc).numpy() if per_doc else np.zeros(0, np.float32)

    def train_step(self, docs: list[np.ndarray], lr: float) -> float:
        """One optimizer step on the mean loss of ``docs``; returns that loss (nats)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.token_losses(docs).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._clip_counting_absent()
        self.optimizer.step()
        return float(loss.item())

    def _clip_counting_absent(self) -> None:
        """Clip the global gradient norm as the full model would compute it: the shared absent-token
        row stands for M rows, each with this (already 1/M-scaled) gradient."""
        max_norm = self.config.max_grad_norm
        if max_norm <= 0:
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        total_sq = sum(float(g.pow(2).sum()) for g in grads)
        if self.absent > 1:
            total_sq += (self.absent - 1) * float(self.head.grad[-1].pow(2).sum())
        norm = math.sqrt(total_sq)
        if norm > max_norm:
            for g in grads:
                g.mul_(max_norm / (norm + 1e-6))

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The 50,304-row model's weights, under Pythia's checkpoint names (``embed_out.weight``)."""
        used_t = torch.from_numpy(self.used)
        state = {}
        for name, tensor in self.model.state_dict().items():
            tensor = tensor.detach()
            if name == "gpt_neox.embed_in.weight":
                full = self.embed_in_init.clone()
                full[used_t] = tensor[: len(self.used)]
                state[name] = full
            elif name in ("lm_head.weight", "embed_out.weight"):
                full = tensor[-1:].repeat(PADDED_VOCAB, 1)
                full[used_t] = tensor[: len(self.used)]
                state["embed_out.weight"] = full
            else:
                state[name] = tensor.clone()
        return {k: v.contiguous() for k, v in state.items()}
