"""The canonical tokenized corpus and its index over predictable tokens (docs/design.md contract).

A document of n tokens has max(n − 1, 0) predictable tokens. The canonical index g runs over
the predictable tokens of all documents in order (g = 0 is token 1 of document 0). With
``starts = [0] + cumsum(preds_len)``: document = ``searchsorted(starts, g, "right") − 1``,
position = ``g − starts[doc] + 1``; the loss of g is the cross-entropy of ``logits[pos − 1]``
against ``ids[pos]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quanta_core.corpus.pile import PileDocument
from quanta_core.corpus.tokenizer import MAX_TOKENS, tokenize
from quanta_core.store import read_value


def predictable_lengths(num_tokens: np.ndarray) -> np.ndarray:
    """Predictable tokens per document: ``max(n − 1, 0)``, int64 ``[D]``."""
    return np.maximum(np.asarray(num_tokens, dtype=np.int64) - 1, 0)


def predictable_starts(num_tokens: np.ndarray) -> np.ndarray:
    """``[0] + cumsum(predictable_lengths)``, int64 ``[D + 1]``."""
    return np.concatenate([[0], np.cumsum(predictable_lengths(num_tokens))]).astype(np.int64)


def index_to_doc_pos(g: np.ndarray | int, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical index → (document, position of the target token within the document)."""
    g = np.asarray(g, dtype=np.int64)
    if g.size and (g.min() < 0 or g.max() >= starts[-1]):
        raise IndexError(f"canonical index out of range [0, {starts[-1]})")
    doc = np.searchsorted(starts, g, side="right") - 1
    return doc, g - starts[doc] + 1


def doc_pos_to_index(doc: np.ndarray | int, pos: np.ndarray | int, starts: np.ndarray) -> np.ndarray:
    """(document, position ≥ 1) → canonical index."""
    doc, pos = np.asarray(doc, dtype=np.int64), np.asarray(pos, dtype=np.int64)
    lengths = np.diff(starts)[doc]
    if np.any(pos < 1) or np.any(pos > lengths):
        raise IndexError("position is not a predictable token of its document")
    return starts[doc] + pos - 1


@dataclass
class CanonicalCorpus:
    """Tokenized corpus. ``ids``: uint16 ``[T]`` (documents concatenated, each ≤ 1024 tokens);
    ``offsets``: int64 ``[D + 1]`` token offsets; ``documents``: one row per document with
    ``pile_set_name``, ``num_tokens``, ``num_predictable``."""

    ids: np.ndarray
    offsets: np.ndarray
    documents: pd.DataFrame

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def starts(self) -> np.ndarray:
        """Canonical-index start of each document, int64 ``[D + 1]``."""
        return predictable_starts(self.num_tokens)

    @property
    def num_predictable(self) -> int:
        return int(self.starts[-1])

    def first(self, num_documents: int) -> CanonicalCorpus:
        """The corpus restricted to its first ``num_documents`` documents (a view, no copy)."""
        if num_documents > self.num_documents:
            raise ValueError(f"asked for {num_documents} documents, the corpus has {self.num_documents}")
        offsets = self.offsets[: num_documents + 1]
        return CanonicalCorpus(self.ids[: offsets[-1]], offsets, self.documents.iloc[:num_documents])

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d``, uint16 ``[n]``."""
        return self.ids[self.offsets[d] : self.offsets[d + 1]]

    def target_ids(self) -> np.ndarray:
        """The token id at every canonical index (the target of each prediction), ``[G]``."""
        keep = np.ones(len(self.ids), dtype=bool)
        first = self.offsets[:-1][self.num_tokens > 0]
        keep[first] = False
        return self.ids[keep]

    def to_arrays(self) -> dict:
        return {"ids": self.ids, "offsets": self.offsets, "documents": self.documents}

    @classmethod
    def from_arrays(cls, arrays: dict) -> CanonicalCorpus:
        return cls(np.asarray(arrays["ids"]), np.asarray(arrays["offsets"]), arrays["documents"])

    @classmethod
    def load(cls, path) -> CanonicalCorpus:
        """The corpus stored at ``path`` (the ``pile_canonical`` directory; ids memory-mapped)."""
        return cls.from_arrays(read_value(path))


def build_canonical(
    documents: Iterable[PileDocument],
    tokenizer,
    batch_size: int = 256,
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[int], None] | None = None,
) -> CanonicalCorpus:
    """Tokenize documents (batched, parallel), truncate to ``max_tokens``, concatenate."""
    set_names: list[str] = []

    def texts():
        for doc in documents:
            set_names.append(doc.pile_set_name)
            yield doc.text

    chunks = list(tokenize(tokenizer, texts(), batch_size=batch_size, max_tokens=max_tokens, progress=progress))
    lengths = np.array([len(c) for c in chunks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate(chunks).astype(np.uint16) if chunks else np.zeros(0, dtype=np.uint16)
    table = pd.DataFrame(
        {
            "pile_set_name": pd.Series(set_names, dtype="string"),
            "num_tokens": lengths,
            "num_predictable": predictable_lengths(lengths),
        }
    )
    return CanonicalCorpus(ids=ids, offsets=offsets, documents=table)
