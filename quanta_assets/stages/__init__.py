"""Stages: the GPU-heavy work of an asset as a plain function of JSON-able parameters.

``run_stage(name, params, log)`` reads the stage's inputs from the cache (paths in ``params``),
calls :mod:`quanta_core`, writes its outputs atomically into the cache layout and returns the
materialization metadata in Dagster Pipes' format (plain values, or ``{"raw_value": …, "type":
"md" | "path" | "json"}``). No Dagster import anywhere in this package: the same call runs in the
Dagster process (compute backend ``local``) or as a job on a cluster with only ``quanta_core``
and ``dagster-pipes`` (backend ``slurm``), so both give the same files.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

STAGES = {
    "quanta_demo_suite": "quanta_assets.stages.demo_suite",
    "pile_losses": "quanta_assets.stages.losses",
    "quanta_similarity": "quanta_assets.stages.similarity",
}
"""Stage name (the asset it computes) → module with ``run(params, log) -> metadata``."""


def run_stage(name: str, params: dict, log: Callable[[str], None]) -> dict:
    """Run stage ``name`` (a key of :data:`STAGES`) and return its metadata."""
    if name not in STAGES:
        raise KeyError(f"unknown stage {name!r}; known: {sorted(STAGES)}")
    return importlib.import_module(STAGES[name]).run(params, log)


def md(text: str) -> dict:
    """A Markdown metadata entry."""
    return {"raw_value": text, "type": "md"}


def path(value) -> dict:
    """A path metadata entry."""
    return {"raw_value": str(value), "type": "path"}


def json_value(value) -> dict:
    """A JSON metadata entry (a dict or list shown as JSON)."""
    return {"raw_value": value, "type": "json"}
