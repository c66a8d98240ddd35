"""Partitions shared by the per-checkpoint assets: ``model`` × ``step``, both static."""

from __future__ import annotations

import dagster as dg

DEMO_MODEL = "quanta-demo"
"""The embedded demo suite: a small GPT-NeoX trained by the project on the mini-Pile."""

_SIZES = ["14m", "31m", "70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]
_V0_SIZES = ["70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b"]

PYTHIA_MODELS: list[str] = (
    [f"pythia-{s}" for s in _SIZES]
    + [f"pythia-{s}-deduped" for s in _SIZES]
    + [f"pythia-{s}-v0" for s in _V0_SIZES]
    + [f"pythia-{s}-deduped-v0" for s in _V0_SIZES]
)
MODELS: list[str] = [DEMO_MODEL, *PYTHIA_MODELS]

LOG_SPACED_STEPS = [0] + [2**i for i in range(10)]  # 0, 1, 2, 4, …, 512
PYTHIA_STEPS: list[str] = [f"step{s}" for s in LOG_SPACED_STEPS + list(range(1000, 143001, 1000))]
assert len(PYTHIA_STEPS) == 154

model_partitions = dg.StaticPartitionsDefinition(MODELS)
step_partitions = dg.StaticPartitionsDefinition(PYTHIA_STEPS)
checkpoint_partitions = dg.MultiPartitionsDefinition({"model": model_partitions, "step": step_partitions})


def step_number(step: str) -> int:
    """``"step1000"`` → 1000."""
    if not step.startswith("step") or not step[4:].isdigit():
        raise ValueError(f"not a Pythia step name: {step!r}")
    return int(step[4:])


def checkpoint_key(model: str, step: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"model": model, "step": step})


def model_and_step(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """The (model, step) of the partition being materialized."""
    dims = context.partition_key.keys_by_dimension
    return dims["model"], dims["step"]
