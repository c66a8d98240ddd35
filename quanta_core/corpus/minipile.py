"""The embedded mini-Pile: a small corpus in the Pile's own format built from text that ships
with Python itself, so the platform runs end to end with no network.

* code documents (``pile_set_name = "Github"``, as the Pile's GitHub subset): standard-library
  modules split at their top-level ``def``/``class`` statements, one chunk per document;
* prose documents (``pile_set_name = "PydocTopics"``): the entries of ``pydoc_data.topics``.

The output is deterministic for a given Python version: files are walked in sorted order,
documents are shuffled with a fixed seed, and the zstd stream is written at a fixed level.
"""

from __future__ import annotations

import os
import random
import re
import sys
import sysconfig
from pathlib import Path

from quanta_core.corpus.pile import write_pile

DEFAULT_NUM_DOCUMENTS = 2000
PROSE_SHARE = 0.1  # at most this share of documents are pydoc topics (there are ~90 anyway)
MAX_CHUNK_LINES = 40  # long definitions are cut into pieces of at most this many lines
_SKIP_DIRS = {"site-packages", "test", "tests", "idle_test", "__pycache__", "_bundled", "turtledemo"}
_TOP_LEVEL = re.compile(r"^(?:def |class |async def |@)")
SEED = 20230313  # arXiv 2303.13506


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _split_top_level(source: str) -> list[str]:
    """Split module source at top-level definitions (a decorator starts its definition)."""
    chunks, current = [], []
    for line in source.splitlines(keepends=True):
        starts_def = bool(_TOP_LEVEL.match(line))
        continues_decorator = current and current[-1].startswith("@")
        if starts_def and current and not continues_decorator:
            chunks.append(current)
            current = []
        current.append(line)
        if len(current) >= MAX_CHUNK_LINES and not line.startswith("@"):
            chunks.append(current)
            current = []
    if current:
        chunks.append(current)
    return ["".join(c) for c in chunks if sum(1 for line in c if line.strip()) >= 3]


def code_documents() -> list[tuple[str, dict]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in _stdlib_files():
        try:
            source = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(root).as_posix()
        docs += [(chunk, {"pile_set_name": "Github", "path": f"Lib/{rel}"}) for chunk in _split_top_level(source)]
    return docs


def prose_documents() -> list[tuple[str, dict]]:
    from pydoc_data.topics import topics

    return [(topics[name], {"pile_set_name": "PydocTopics", "topic": name}) for name in sorted(topics)]


def minipile_documents(num_documents: int = DEFAULT_NUM_DOCUMENTS) -> list[tuple[str, dict]]:
    """The mini-Pile's ``(text, meta)`` pairs, shuffled with a fixed seed."""
    rng = random.Random(SEED)
    prose = prose_documents()
    prose = rng.sample(prose, min(len(prose), int(num_documents * PROSE_SHARE)))
    code = code_documents()
    code = rng.sample(code, min(len(code), num_documents - len(prose)))
    docs = code + prose
    rng.shuffle(docs)
    return docs


def minipile_name(num_documents: int = DEFAULT_NUM_DOCUMENTS) -> str:
    """File name that changes with the Python version (the text it is built from)."""
    v = sys.version_info
    return f"minipile-py{v.major}.{v.minor}.{v.micro}-{num_documents}.jsonl.zst"


def build_minipile(directory: str | os.PathLike, num_documents: int = DEFAULT_NUM_DOCUMENTS) -> Path:
    """Write the mini-Pile into ``directory`` (once; an existing file is reused) and return its path."""
    path = Path(directory) / minipile_name(num_documents)
    if not path.exists():
        write_pile(path, minipile_documents(num_documents))
    return path
