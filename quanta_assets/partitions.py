"""Partitions of the per-checkpoint assets: ``model`` × ``step``, both static (models and steps
from :mod:`quanta_core.presets` and :mod:`quanta_core.steps`)."""

from __future__ import annotations

import warnings

import dagster as dg

from quanta_core.presets import MODELS
from quanta_core.steps import PYTHIA_STEPS

model_partitions = dg.StaticPartitionsDefinition(MODELS)
step_partitions = dg.StaticPartitionsDefinition(PYTHIA_STEPS)
checkpoint_partitions = dg.MultiPartitionsDefinition({"model": model_partitions, "step": step_partitions})

with warnings.catch_warnings():  # the mapping is marked beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_MODEL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")
    """A model partition ↔ every model × step partition of that model."""


def checkpoint_key(model: str, step: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"model": model, "step": step})


def model_and_step(context) -> tuple[str, str]:
    """The (model, step) of the partition being materialized (or checked)."""
    dims = context.partition_key.keys_by_dimension
    return dims["model"], dims["step"]
