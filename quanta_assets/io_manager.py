"""The cache IO manager: files under ``QUANTA_CACHE_DIR`` in DESIGN.md's layout, never pickle.

Built on Dagster's :class:`UPathIOManager`, so any fsspec URL (``s3://…``) works as a base when
its backend is installed. Layout:

* unpartitioned asset ``A``           → ``<cache>/corpus/A<ext>``
* partitioned by model × step         → ``<cache>/<model>/<step>/A<ext>``
* partitioned by model only           → ``<cache>/<model>/A<ext>``

What is stored depends on the value an asset returns:

=========================  ====================================================
``numpy.ndarray``          ``A.npy`` (loaded memory-mapped, ``allow_pickle=False``)
``pandas.DataFrame``       ``A.parquet``
``str``                    ``A.html`` (a report)
``dict`` of the above      a directory ``A/`` with one file per key; ``dict``/``list``
                           values become ``key.json``
=========================  ====================================================

Local writes are atomic (temporary sibling + rename): a failed or cancelled run never leaves a
file a later run would trust.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from upath import UPath

from quanta_core.atomic import atomic_path
from quanta_core.paths import default_cache_dir

_SUFFIXES = (".npy", ".parquet", ".html", ".json", "")


def _is_local(path: UPath) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


def _write_value(path: UPath, value: Any) -> UPath:
    """Write one value to ``path`` + the suffix for its type; returns the final path."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError(f"refusing to store an object array at {path}: it would need pickle")
        target = path.with_name(path.name + ".npy")
        with target.open("wb") as f:
            np.save(f, value, allow_pickle=False)
    elif isinstance(value, pd.DataFrame):
        target = path.with_name(path.name + ".parquet")
        with target.open("wb") as f:
            value.to_parquet(f, index=False)
    elif isinstance(value, str):
        target = path.with_name(path.name + ".html")
        target.write_text(value, encoding="utf-8")
    elif isinstance(value, (list, tuple)) or (isinstance(value, dict) and path.name.endswith("@json")):
        target = path.with_name(path.name.removesuffix("@json") + ".json")
        target.write_text(json.dumps(value, indent=1), encoding="utf-8")
    else:
        raise TypeError(f"cannot store a {type(value).__name__} at {path}: use ndarray, DataFrame, str or dict")
    return target


def _read_value(path: UPath, mmap: bool) -> Any:
    suffix = path.suffix
    if suffix == ".npy":
        if mmap and _is_local(path):
            return np.load(str(path), mmap_mode="r", allow_pickle=False)
        with path.open("rb") as f:
            return np.load(io.BytesIO(f.read()), allow_pickle=False)
    if suffix == ".parquet":
        with path.open("rb") as f:
            return pd.read_parquet(f)
    if suffix == ".html":
        return path.read_text(encoding="utf-8")
    if suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    raise ValueError(f"unknown stored file type: {path}")


class QuantaIOManager(dg.UPathIOManager):
    """Stores assets under ``base_dir`` in the layout described in the module docstring."""

    def __init__(self, base_dir: str | None = None):
        super().__init__(base_path=UPath(base_dir or default_cache_dir()))

    # -- paths ---------------------------------------------------------------------------------
    def get_asset_relative_path(self, context) -> UPath:
        return UPath("corpus", *context.asset_key.path)

    def get_path_for_partition(self, context, path: UPath, partition: str) -> UPath:
        return self._base_path.joinpath(*partition.split("/"), *context.asset_key.path)

    def _stored(self, path: UPath) -> UPath:
        """The stored file or directory for an extension-less asset path."""
        for suffix in _SUFFIXES:
            candidate = path.with_name(path.name + suffix) if suffix else path
            if candidate.exists():
                return candidate
        raise FileNotFoundError(f"nothing stored at {path} (.npy, .parquet, .html or directory)")

    def has_output(self, context) -> bool:
        try:
            self._stored(self._get_path(context))
            return True
        except FileNotFoundError:
            return False

    # -- writing -------------------------------------------------------------------------------
    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if obj is None:
            return
        if _is_local(path):
            self._dump_local(context, obj, Path(str(path)))
        else:  # object stores: each PUT is atomic on its own
            self._dump(obj, path)

    def _dump(self, obj: Any, path: UPath) -> UPath:
        if isinstance(obj, dict):
            path.mkdir(parents=True, exist_ok=True)
            for key, value in obj.items():
                name = f"{key}@json" if isinstance(value, dict) else key
                _write_value(path / name, value)
            return path
        return _write_value(path, obj)

    def _dump_local(self, context, obj: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # write into a private temp directory on the same filesystem, then rename into place
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            written = self._dump(obj, UPath(str(staging / path.name)))
            final = path.with_name(Path(str(written)).name)
            for stale in (path.with_name(path.name + s) if s else path for s in _SUFFIXES):
                if stale != final and stale.exists():  # a previous run stored another type
                    shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            with atomic_path(final) as tmp:
                os.replace(str(written), tmp)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._last_written = final

    def get_metadata(self, context, obj: Any) -> dict:
        final = getattr(self, "_last_written", None)
        return {"path": dg.MetadataValue.path(str(final))} if final is not None else {}

    # -- reading -------------------------------------------------------------------------------
    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        stored = self._stored(path)
        if stored.is_dir():
            out = {}
            for child in sorted(stored.iterdir(), key=lambda p: p.name):
                if not child.name.startswith("."):
                    out[child.name.rsplit(".", 1)[0]] = _read_value(child, mmap=True)
            return out
        return _read_value(stored, mmap=True)


class QuantaIOManagerFactory(dg.ConfigurableIOManagerFactory):
    """The cache IO manager. ``base_dir``: a local path or fsspec URL; default
    ``$QUANTA_CACHE_DIR`` or ``~/.cache/quanta``."""

    base_dir: str | None = None

    def create_io_manager(self, context) -> QuantaIOManager:
        return QuantaIOManager(self.base_dir)
