"""The compute backend of the GPU-heavy stages (resource ``compute``).

``local`` (default): the stage runs in the Dagster step's own process.
"""

from __future__ import annotations

import dagster as dg

from quanta_assets.stages import run_stage

_KINDS = {"md": dg.MetadataValue.md, "path": dg.MetadataValue.path, "json": dg.MetadataValue.json,
          "text": dg.MetadataValue.text, "url": dg.MetadataValue.url}


def dagster_metadata(raw: dict) -> dict:
    """Stage metadata (Dagster Pipes' format: plain values or ``{"raw_value", "type"}``) as
    Dagster metadata values."""
    out = {}
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"raw_value", "type"} and value["type"] in _KINDS:
            out[key] = _KINDS[value["type"]](value["raw_value"])
        else:
            out[key] = value
    return out


class ComputeResource(dg.ConfigurableResource):
    """Where the GPU-heavy stages run. ``backend``: ``local`` (in the step's process)."""

    backend: str = "local"

    def run(self, context: dg.AssetExecutionContext, stage: str, params: dict, model: str) -> dg.MaterializeResult:
        """Run ``stage`` with ``params`` for a partition of ``model``; its metadata becomes the
        materialization's."""
        metadata = run_stage(stage, params, context.log.info)
        return dg.MaterializeResult(metadata=dagster_metadata(metadata))
