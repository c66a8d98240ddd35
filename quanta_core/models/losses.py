"""Per-token cross-entropy of a causal language model over the canonical corpus.

``token_losses`` returns, for every predictable token of the first N documents, the loss in nats
of predicting it from the tokens before it in its document (float32 ``[G]``, aligned to the
canonical index of :mod:`quanta_core.corpus.canonical`: entry g is the cross-entropy of
``logits[pos − 1]`` against ``ids[pos]`` for ``(doc, pos) = index_to_doc_pos(g)``).

How it is computed (the original ran one document per forward pass, with autograd on and the full
``[n, vocab]`` logits of every document):

* documents with ≥ 2 tokens are sorted by length (descending) and grouped into batches of at most
  ``batch_tokens`` padded tokens, so padding stays small;
* each row is one document, right-padded, with an attention mask and position ids ``0 … n−1``
  (GPT-NeoX's rotary positions restart at 0 for every document, as in a lone forward pass);
* the model body (``model.base_model``, i.e. ``gpt_neox``) runs to the final hidden states under
  ``torch.inference_mode``; the unembedding (``model.get_output_embeddings()``) and the
  cross-entropy then run on chunks of ``logits_chunk`` predicted positions, so at most a
  ``[logits_chunk, vocab]`` float32 logits block exists at a time;
* identical unembedding rows (the never-seen tokens of a model trained on part of the vocabulary,
  like the demo suite) are merged exactly, see :class:`_Unembedding`.

Empty and one-token documents have no predictable token and contribute nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.models.batching import length_batches

BATCH_TOKENS = {"cpu": 16_384, "cuda": 65_536}
"""Default padded tokens per forward pass (rows × longest row), by device type."""

MAX_PADDING = 0.125
"""A batch takes a document only if padding it to the batch's longest wastes at most this share."""

LOGITS_CHUNK = {"cpu": 256, "cuda": 8_192}
"""Default predicted positions per unembedding + cross-entropy chunk, by device type: small on a
CPU, where blocks that stay in cache and are reused by the allocator are faster (256 × 50,304
fp32 ≈ 50 MB); large on a GPU (8,192 × 50,304 fp32 ≈ 1.6 GB)."""


def default_batching(device: str | torch.device) -> tuple[int, int]:
    """``(batch_tokens, logits_chunk)`` defaults for a device (CUDA values for any accelerator)."""
    kind = "cpu" if torch.device(device).type == "cpu" else "cuda"
    return BATCH_TOKENS[kind], LOGITS_CHUNK[kind]


def plan_batches(lengths: np.ndarray, batch_tokens: int, max_padding: float = MAX_PADDING) -> list[np.ndarray]:
    """Group documents into forward passes.

    ``lengths``: tokens per document, int ``[D]``. Returns a list of document-index arrays; only
    documents with ≥ 2 tokens appear, sorted by length (descending, ties in document order). Each
    batch holds at most ``batch_tokens`` padded tokens (``len(batch) × longest``; a single document
    when that alone is longer), and only documents at least ``(1 − max_padding) × longest`` long.
    """
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    docs = np.flatnonzero(lengths >= 2)
    docs = docs[np.argsort(-lengths[docs], kind="stable")]
    return length_batches(docs, lengths, max_tokens=batch_tokens, max_padding=max_padding)


class _Unembedding:
    """The unembedding with identical output rows merged (exact: identical rows give identical
    logits, so each distinct row enters the log-sum-exp with ``+ log(count)``).

    A model trained on part of the vocabulary (the demo suite: ≈13,400 of 50,304 tokens used) keeps
    the rows of never-seen tokens equal; merging them cuts the largest product of the loss
    computation by the same factor. Models with distinct rows (Pythia) use the layer as it is.
    """

    def __init__(self, layer: torch.nn.Module):
        self.layer = layer
        self.merged = False
        if not isinstance(layer, torch.nn.Linear):
            return
        weight, bias = layer.weight, layer.bias
        rows = weight if bias is None else torch.cat([weight, bias[:, None]], dim=1)
        if not self._maybe_repeated(rows):
            return
        distinct, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
        if len(distinct) < len(rows):
            self.merged = True
            self.weight = distinct[:, : weight.shape[1]].contiguous()
            self.bias = None if bias is None else distinct[:, -1].contiguous()
            self.log_counts = counts.float().log()
            self.inverse = inverse

    @staticmethod
    def _maybe_repeated(rows: torch.Tensor) -> bool:
        """Cheap pre-test: identical rows agree in their first two entries, so when no two rows
        share them there is no repeated row and the exact row sort (slow on a large vocabulary)
        is skipped. The two float32 bit patterns are packed into one int64 key, no arithmetic."""
        if rows.shape[1] < 2:
            return True
        bits = rows[:, :2].float().contiguous().view(torch.int32).long()
        keys = (bits[:, 0] << 32) | (bits[:, 1] & 0xFFFFFFFF)
        return len(torch.unique(keys)) < len(rows)

    def losses(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (nats, float32 ``[N]``) of ``hidden`` ``[N, H]`` against ``targets`` ``[N]``."""
        if not self.merged:
            return F.cross_entropy(self.layer(hidden).float(), targets, reduction="none")
        logits = F.linear(hidden, self.weight, self.bias).float()  # [N, distinct rows]
        logits += self.log_counts  # row r stands for count[r] equal logits
        rows = self.inverse[targets]
        return F.cross_entropy(logits, rows, reduction="none") + self.log_counts[rows]


def _resolve(model: torch.nn.Module, device, dtype) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    device = torch.device(device) if device is not None else param.device
    dtype = dtype if dtype is not None else param.dtype
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if param.device != device or param.dtype != dtype:
        model.to(device=device, dtype=dtype)
    return device, dtype


@torch.inference_mode()
def token_losses(
    model: torch.nn.Module,
    corpus: CanonicalCorpus,
    *,
    num_documents: int | None = None,
    batch_tokens: int | None = None,
    logits_chunk: int | None = None,
    max_padding: float = MAX_PADDING,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Cross-entropy (nats) of every predictable token of the first ``num_documents`` documents.

    ``model``: a Hugging Face causal LM with ``base_model`` (the transformer body returning
    ``last_hidden_state``) and ``get_output_embeddings()`` (e.g. ``GPTNeoXForCausalLM``); it should
    be in eval mode. ``num_documents``: ``None`` for every document of ``corpus``.
    ``batch_tokens``: padded tokens per forward pass. ``logits_chunk``: positions per unembedding
    chunk (both ``None``: :func:`default_batching` for the device). ``max_padding``: see
    :func:`plan_batches`. ``device``/``dtype``: where and in what precision to run; default the
    model's own (when given and different, the model is moved/cast in place). The log-softmax is
    always taken in float32. ``progress(done)`` is called after each forward pass with the number
    of predictable tokens done so far.

    Returns float32 ``[G]``, G = predictable tokens of those documents, in canonical-index order.
    """
    if num_documents is not None:
        corpus = corpus.first(num_documents)
    device, _ = _resolve(model, device, dtype)
    default_tokens, default_chunk = default_batching(device)
    batch_tokens = default_tokens if batch_tokens is None else batch_tokens
    logits_chunk = default_chunk if logits_chunk is None else logits_chunk
    if logits_chunk < 1:
        raise ValueError(f"logits_chunk must be positive, got {logits_chunk}")
    body = model.base_model
    if body is model or model.get_output_embeddings() is None:
        raise TypeError(f"{type(model).__name__} has no separate body and unembedding (expected a *ForCausalLM)")
    unembed = _Unembedding(model.get_output_embeddings())

    lengths = corpus.num_tokens
    starts = corpus.starts
    out = np.full(int(starts[-1]), np.nan, dtype=np.float32)
    done = 0
    for batch in plan_batches(lengths, batch_tokens, max_padding):
        rows = lengths[batch]
        width = int(rows.max())
        ids = np.zeros((len(batch), width), dtype=np.int64)
        for r, d in enumerate(batch):
            ids[r, : rows[r]] = corpus.document(int(d))
        input_ids = torch.from_numpy(ids).to(device)
        mask = torch.from_numpy(np.arange(width)[None, :] < rows[:, None]).to(device)
        positions = torch.arange(width, device=device).expand(len(batch), width)
        hidden = body(
            input_ids=input_ids, attention_mask=mask.long(), position_ids=positions, use_cache=False
        ).last_hidden_state

        # predicted positions: row r, columns 0 … n_r − 2 predict columns 1 … n_r − 1 (row-major)
        predicts = mask[:, 1:]
        h = hidden[:, :-1][predicts]  # [N, hidden]
        targets = input_ids[:, 1:][predicts]  # [N]
        losses = torch.empty(len(targets), dtype=torch.float32, device=device)
        for s in range(0, len(targets), logits_chunk):
            losses[s : s + logits_chunk] = unembed.losses(h[s : s + logits_chunk], targets[s : s + logits_chunk])

        # canonical destinations in the same row-major order
        dest = np.concatenate([np.arange(starts[d], starts[d + 1]) for d in batch])
        out[dest] = losses.cpu().numpy()
        done += len(dest)
        if progress is not None:
            progress(done)
    return out
