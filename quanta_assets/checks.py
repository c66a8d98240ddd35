"""Asset checks: the loss tables and the induction filters are what downstream stages assume.

Per-partition checks (one verdict per checkpoint); a failing blocking check stops the downstream
assets of the same run and, with the automation sensor on, keeps them from following.
"""

import math
import warnings

import dagster as dg
import numpy as np

from quanta_assets.assets.corpus import induction_filters
from quanta_assets.assets.losses import pile_losses
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.presets import PADDED_VOCAB

# per-partition checks are what we want; Dagster marks them preview
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                        category=dg.PreviewWarning)


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    additional_ins={"pile_canonical": dg.AssetIn("pile_canonical")},
    required_resource_keys={"loss_settings"},
    blocking=True,
    description="The loss table has one float32 entry per predictable token of the first N documents "
    "(N from loss_settings), so canonical indices line up.",
)
def pile_losses_length(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray, pile_canonical: dict):
    model, _ = model_and_step(context)
    corpus = CanonicalCorpus.from_arrays(pile_canonical)
    num_documents = context.resources.loss_settings.for_model(model, corpus.num_documents)
    expected = int(corpus.starts[num_documents])
    passed = pile_losses.ndim == 1 and len(pile_losses) == expected and pile_losses.dtype == np.float32
    return dg.AssetCheckResult(
        passed=bool(passed),
        metadata={"length": int(pile_losses.shape[0]) if pile_losses.ndim else 0, "expected_length": expected,
                  "num_documents": num_documents, "dtype": str(pile_losses.dtype), "ndim": int(pile_losses.ndim)},
        description=None if passed else (
            f"pile_losses has shape {pile_losses.shape} {pile_losses.dtype}; expected float32 [{expected}] "
            f"(predictable tokens of the first {num_documents} documents)"),
    )


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    blocking=True,
    description="Every loss is finite and ≥ 0 (a cross-entropy can be neither NaN, infinite nor negative).",
)
def pile_losses_finite(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray):
    values = np.asarray(pile_losses, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    num_bad = int(bad.sum())
    first = int(np.flatnonzero(bad)[0]) if num_bad else None
    return dg.AssetCheckResult(
        passed=num_bad == 0,
        metadata={"bad_values": num_bad, "nan": int(np.isnan(values).sum()), "first_bad_index": first},
        description=None if num_bad == 0 else
        f"{num_bad:,} losses are NaN, infinite or negative (first at canonical index {first})",
    )


@dg.asset_check(
    asset=pile_losses,
    partitions_def=checkpoint_partitions,
    required_resource_keys={"loss_settings"},
    blocking=False,
    description="At step0 (random initialization) the mean loss should be about ln(vocab) ≈ 10.83 nats; "
    "a large difference suggests the hub served other weights for this revision (a known Pythia issue). "
    "Warns; other steps pass trivially.",
)
def pile_losses_step0_sanity(context: dg.AssetCheckExecutionContext, pile_losses: np.ndarray):
    _, step = model_and_step(context)
    expected = math.log(PADDED_VOCAB)
    if step != "step0":
        return dg.AssetCheckResult(passed=True, metadata={"applies": False, "step": step})
    values = np.asarray(pile_losses, dtype=np.float64)
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if len(values) else float("nan")
    tolerance = context.resources.loss_settings.step0_tolerance_nats
    passed = bool(abs(mean - expected) <= tolerance)
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"applies": True, "mean_loss_nats": mean, "expected_nats": expected, "tolerance_nats": tolerance},
        description=None if passed else (
            f"step0 mean loss {mean:.3f} nats is not within {tolerance} of ln({PADDED_VOCAB}) = {expected:.3f}: "
            "these may not be the initialization weights"),
    )


@dg.asset_check(
    asset=induction_filters,
    additional_ins={"pile_canonical": dg.AssetIn("pile_canonical")},
    blocking=True,
    description="Both flag arrays are bool with one entry per predictable token of pile_canonical.",
)
def induction_filters_length(context: dg.AssetCheckExecutionContext, induction_filters: dict, pile_canonical: dict):
    expected = CanonicalCorpus.from_arrays(pile_canonical).num_predictable
    problems = []
    for name in ("present_trigram", "present_bigram"):
        flags = induction_filters.get(name)
        if flags is None:
            problems.append(f"{name} is missing")
        elif flags.ndim != 1 or len(flags) != expected or flags.dtype != np.bool_:
            problems.append(f"{name} has shape {flags.shape} {flags.dtype}, expected bool [{expected}]")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"expected_length": expected,
                  **{f"{k}_length": int(len(v)) for k, v in induction_filters.items() if hasattr(v, "__len__")}},
        description="; ".join(problems) or None,
    )


CHECKS = [pile_losses_length, pile_losses_finite, pile_losses_step0_sanity, induction_filters_length]
