"""Pipes-format metadata (what a stage returns) → Dagster metadata, for stages run in-process.

A Slurm job reports the same dict through ``dagster_pipes``; Dagster converts it on arrival, so a
local and a Slurm run of a stage show the same metadata.
"""

from __future__ import annotations

import dagster as dg

_TYPED = {
    "text": dg.MetadataValue.text,
    "url": dg.MetadataValue.url,
    "path": dg.MetadataValue.path,
    "notebook": dg.MetadataValue.notebook,
    "json": dg.MetadataValue.json,
    "md": dg.MetadataValue.md,
    "float": dg.MetadataValue.float,
    "int": dg.MetadataValue.int,
    "bool": dg.MetadataValue.bool,
    "timestamp": dg.MetadataValue.timestamp,
    "null": lambda _value: dg.MetadataValue.null(),
}


def _is_typed(value) -> bool:
    return isinstance(value, dict) and set(value) == {"raw_value", "type"}


def to_dagster_metadata(metadata: dict) -> dict:
    """Each entry: a plain value (Dagster infers its type) or ``{"raw_value": v, "type": t}``."""
    out = {}
    for key, value in metadata.items():
        if not _is_typed(value) or value["type"] == "__infer__":
            out[key] = value["raw_value"] if _is_typed(value) else value
            continue
        make = _TYPED.get(value["type"])
        if make is None:
            raise ValueError(f"metadata {key!r}: unsupported type {value['type']!r} (one of {sorted(_TYPED)})")
        out[key] = make(value["raw_value"])
    return out
