"""How asset values are stored: one file or directory per value, never pickle; writes atomic.

=========================  =====================================================
``numpy.ndarray``          ``<path>.npy`` (read back memory-mapped, ``allow_pickle=False``)
``pandas.DataFrame``       ``<path>.parquet``
``str``                    ``<path>.html`` (a report or page)
``dict``                   a directory ``<path>/`` with one entry per key (the same rules,
                           recursively one level: ``dict``/``list`` values become ``key.json``)
=========================  =====================================================

A write goes to a private temporary sibling and is renamed into place: an interrupted write never
leaves anything at ``<path>…`` that a later run would trust. Used by the Dagster IO manager and by
the stages that run on a cluster, so both produce the same files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quanta_core.atomic import atomic_path
from quanta_core.integrity import CacheFileError, load_npy

SUFFIXES = (".npy", ".parquet", ".html", ".json", "")


def _write_one(path: Path, value: Any, as_json: bool = False) -> Path:
    """Write ``value`` to ``path`` + the suffix for its type (not atomic; see :func:`write_value`)."""
    if as_json or isinstance(value, (list, tuple)):
        target = path.with_name(path.name + ".json")
        target.write_text(json.dumps(value, indent=1), encoding="utf-8")
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"refusing to store an object array at {path}: it would need pickle")
        target = path.with_name(path.name + ".npy")
        with open(target, "wb") as f:
            np.save(f, value, allow_pickle=False)
    elif isinstance(value, pd.DataFrame):
        target = path.with_name(path.name + ".parquet")
        with open(target, "wb") as f:
            value.to_parquet(f, index=False)
    elif isinstance(value, str):
        target = path.with_name(path.name + ".html")
        target.write_text(value, encoding="utf-8")
    elif isinstance(value, dict):
        path.mkdir()
        for key, item in value.items():
            _write_one(path / key, item, as_json=isinstance(item, dict))
        target = path
    else:
        raise TypeError(f"cannot store a {type(value).__name__} at {path}: use ndarray, DataFrame, str or dict")
    return target


def write_value(path: str | os.PathLike, value: Any) -> Path:
    """Store ``value`` at ``path`` (no suffix; one is added for its type), atomically; a value of
    another type stored there before is removed. Returns the final path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        written = _write_one(staging / path.name, value)
        final = path.with_name(written.name)
        for old in (path.with_name(path.name + s) for s in SUFFIXES):
            if old != final and old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        with atomic_path(final) as tmp:
            os.replace(written, tmp)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def stored_path(path: str | os.PathLike) -> Path | None:
    """The stored file or directory for a suffix-less ``path`` (or ``path`` itself when it is a
    stored file), or ``None`` when nothing is there."""
    path = Path(path)
    if path.suffix in SUFFIXES[:-1] and path.is_file():
        return path
    for suffix in SUFFIXES:
        candidate = path.with_name(path.name + suffix) if suffix else path
        if candidate.exists() and (suffix or candidate.is_dir()):
            return candidate
    return None


def _read_one(path: Path) -> Any:
    if path.suffix == ".npy":
        return load_npy(path)
    readers = {".parquet": pd.read_parquet, ".html": lambda p: p.read_text(encoding="utf-8"),
               ".json": lambda p: json.loads(p.read_text(encoding="utf-8"))}
    if path.suffix not in readers:
        raise ValueError(f"unknown stored file type: {path}")
    try:
        return readers[path.suffix](path)
    except (ValueError, OSError, UnicodeDecodeError) as e:  # pyarrow's errors are ValueError / OSError
        raise CacheFileError(f"{path}: cannot read this {path.suffix} file ({path.stat().st_size} bytes): {e}") from e


def open_table(table, name: str) -> tuple[np.ndarray, str]:
    """``(1-D float array, where)`` of a loss table given as a ``.npy`` path (opened memory-mapped,
    never pickle) or an array (used as is; a memmap is described by its file). ``name`` (e.g. the
    step) and ``where`` name the table in errors; a clear error for a missing file or a table that is
    not a 1-D float array."""
    if isinstance(table, np.ndarray):
        filename = getattr(table, "filename", None)
        array, where = table, str(filename) if filename else f"the array given for {name}"
    else:
        where = os.fspath(table)
        if not os.path.isfile(where):
            raise FileNotFoundError(f"loss table for {name} not found: {where}")
        array = load_npy(where)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"loss table for {name} ({where}) must be a 1-D float array, got {array.dtype} {array.shape}")
    return array, where


def read_value(path: str | os.PathLike) -> Any:
    """Read what :func:`write_value` stored at ``path`` (suffix-less, or the stored file itself;
    arrays memory-mapped).
    Raises ``FileNotFoundError`` naming the path when nothing is stored there."""
    stored = stored_path(path)
    if stored is None:
        raise FileNotFoundError(f"nothing stored at {path} (.npy, .parquet, .html, .json or a directory)")
    if stored.is_dir():
        return {child.name.rsplit(".", 1)[0]: _read_one(child)
                for child in sorted(stored.iterdir(), key=lambda p: p.name) if not child.name.startswith(".")}
    return _read_one(stored)
