"""Partitions: ``model`` × ``step`` (the per-checkpoint assets), ``model`` (per-model analyses) and
``family`` × ``step`` (across the model sizes of a family at one step), all static (models,
families and steps from :mod:`quanta_core.presets` and :mod:`quanta_core.steps`)."""

from __future__ import annotations

import warnings

import dagster as dg

from quanta_core.presets import FAMILIES, MODELS
from quanta_core.steps import PYTHIA_STEPS

model_partitions = dg.StaticPartitionsDefinition(MODELS)
step_partitions = dg.StaticPartitionsDefinition(PYTHIA_STEPS)
checkpoint_partitions = dg.MultiPartitionsDefinition({"model": model_partitions, "step": step_partitions})
family_partitions = dg.StaticPartitionsDefinition(list(FAMILIES))
family_step_partitions = dg.MultiPartitionsDefinition({"family": family_partitions, "step": step_partitions})


with warnings.catch_warnings():  # the mappings are marked beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    BY_MODEL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")
    """A model partition ↔ every model × step partition of that model."""
    FAMILY_MODELS = dg.MultiPartitionMapping({
        "model": dg.DimensionPartitionMapping(
            "family", dg.StaticPartitionMapping({m: f for f, models in FAMILIES.items() for m in models})),
        "step": dg.DimensionPartitionMapping("step", dg.IdentityPartitionMapping()),
    })
    """A family × step partition ↔ the model × step partitions of the family's models at that step
    (models outside every family, i.e. the demo suite, map to none)."""


def checkpoint_key(model: str, step: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"model": model, "step": step})


def model_and_step(context) -> tuple[str, str]:
    """The (model, step) of the partition being materialized (or checked)."""
    dims = context.partition_key.keys_by_dimension
    return dims["model"], dims["step"]


def family_and_step(context) -> tuple[str, str]:
    """The (family, step) of the family × step partition being materialized."""
    dims = context.partition_key.keys_by_dimension
    return dims["family"], dims["step"]
