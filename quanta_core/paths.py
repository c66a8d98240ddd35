"""Where things live: the cache directory (``QUANTA_CACHE_DIR``) and its layout.

``<cache>/corpus/…`` holds unpartitioned corpus assets; ``<cache>/<model>/<step>/…`` holds
partitioned ones; ``<cache>/hub`` is the Hugging Face hub-layout repository of the demo suite.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "QUANTA_CACHE_DIR"
PILE_ENV = "QUANTA_PILE"


def default_cache_dir() -> str:
    """``$QUANTA_CACHE_DIR``, else ``~/.cache/quanta``."""
    return os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "quanta")


def corpus_dir(cache_dir: str | os.PathLike) -> Path:
    return Path(cache_dir) / "corpus"
