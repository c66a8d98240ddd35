"""Stage names → stage functions, without Dagster (the Slurm payload imports this).

A stage is ``fn(params: dict, log: Callable[[str], None]) -> dict``: it reads its inputs from the
cache, writes its outputs atomically, and returns metadata in Dagster Pipes' format (plain JSON
values, or ``{"raw_value": ..., "type": "md" | "path" | "json" | ...}``).

A name is either ``"package.module:function"`` (any importable function, e.g. a test's stage) or a
plain name such as ``"pile_losses"``, which ``quanta_assets.stages.run_stage(name, params, log)``
runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from quanta_core import store
from quanta_core.integrity import fingerprint_metadata

Log = Callable[[str], None]
Stage = Callable[[dict, Log], dict]


def resolve_stage(name: str) -> Stage:
    """The function that runs stage ``name`` (see the module docstring); a clear error if none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"stage name must be a non-empty string, got {name!r}")
    if ":" not in name:
        stages = importlib.import_module("quanta_assets.stages")
        return lambda params, log: stages.run_stage(name, params, log)
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"stage {name!r}: cannot import module {module_name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"stage {name!r}: module {module_name!r} has no function {attr!r}")  # noqa: TRY004
    return fn


def run_stage(name: str, params: dict, log: Log) -> dict:
    """Run stage ``name`` with ``params``; returns its Pipes-format metadata (a dict), plus the
    ``content_size`` / ``content_hash`` of what it stored at ``params["output"]`` (if given)."""
    metadata = resolve_stage(name)(params, log)
    if not isinstance(metadata, dict):
        raise TypeError(f"stage {name!r} returned {type(metadata).__name__}, expected a metadata dict")
    stored = store.stored_path(params["output"]) if params.get("output") else None
    return {**metadata, **fingerprint_metadata(stored)} if stored is not None else metadata
