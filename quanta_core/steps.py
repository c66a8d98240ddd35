"""Checkpoint step names: Pythia's 154 revisions ``step0, step1, step2, step4, …, step512,
step1000, …, step143000``, and the one parser of a step name."""

from __future__ import annotations

import math
import re

_STEP = re.compile(r"^step(\d+)$")

LOG_SPACED_STEPS = [0] + [2**i for i in range(10)]  # 0, 1, 2, 4, …, 512
PYTHIA_STEPS: list[str] = [f"step{s}" for s in LOG_SPACED_STEPS + list(range(1000, 143001, 1000))]
assert len(PYTHIA_STEPS) == 154


def step_number(step: str) -> int:
    """``"step1000"`` → 1000; a ``ValueError`` naming the input for anything else."""
    match = _STEP.match(str(step))
    if not match:
        raise ValueError(f"not a checkpoint step name (expected 'step<N>'): {step!r}")
    return int(match.group(1))


def sorted_steps(steps) -> list[str]:
    """Step names in training order (by step number)."""
    return sorted(steps, key=step_number)


def step_x(step: int | float) -> float:
    """Position of a step on a logarithmic step axis: ``log10(step + 1)`` (step0 → 0)."""
    return math.log10(float(step) + 1.0)
