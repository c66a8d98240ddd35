"""Token learning times: ``token_learning_times`` (per model, across training) and
``token_scale_curves`` (per family × step, across model sizes). The fits are
:mod:`quanta_core.learning.times` / :mod:`quanta_core.learning.scale`; this is wiring.

Both read their loss tables through the IO manager, memory-mapped (only ``chunk_tokens`` tokens of
every table are in memory at a time); ``quanta_training_dynamics`` reads ``token_learning_times``
for the model page and the "learned at once" test.
"""

import json
from pathlib import Path

import dagster as dg

from quanta_assets.automation import follow_upstream_aggregate
from quanta_assets.io_manager import by_step, partition_parts
from quanta_assets.partitions import BY_MODEL, FAMILY_MODELS, family_and_step, family_step_partitions, model_partitions
from quanta_assets.settings import LearningTimeSettings, ScaleCurveSettings
from quanta_core.learning.scale import fit_scale_curves, gptneox_parameter_count
from quanta_core.learning.spectrum import learning_time_spectrum
from quanta_core.learning.times import fit_learning_times
from quanta_core.presets import FAMILIES
from quanta_core.progress import RateLog
from quanta_core.report.learning_page import render_scale_page
from quanta_core.steps import step_number

_EVERY_STEP = {"partition_mapping": BY_MODEL, "metadata": {"allow_missing_partitions": True}}
_EVERY_MODEL = {"partition_mapping": FAMILY_MODELS, "metadata": {"allow_missing_partitions": True}}


def _fit_metadata(summary: dict) -> dict:
    """Metadata common to both fits: tokens, well fit, flags, speed, memory bound."""
    return {
        "tokens": summary["tokens"],
        "well_fit_fraction": round(summary["well_fit_fraction"], 4),
        **{f"flagged_{name}": count for name, count in summary["flag_counts"].items()},
        "tokens_per_second": summary["tokens_per_second"],
        "seconds": summary["seconds"],
        "workers": summary["workers"],
        "chunk_tokens": summary["chunk_tokens"],
        "working_memory_mib_bound": round(summary["working_memory_bytes_bound"] / 2**20, 1),
    }


@dg.asset(
    partitions_def=model_partitions,
    ins={"pile_losses": dg.AssetIn(**_EVERY_STEP)},
    group_name="learning",
    code_version="1",
    automation_condition=follow_upstream_aggregate(),
    description=(
        "When every token is learned. For every predictable token of the model's pile_losses, a sigmoid fit of "
        "its loss against log10(step + 1) over every checkpoint materialized (from the setting min_step on): "
        "loss before and after (nats), learning time (midpoint), width (decades), R², rms and flags (0 = well "
        "fit; no_drop, rises, noisy, edge, underdetermined: docs/learning-times.md). Tables are read memory-mapped, "
        "chunk_tokens tokens at a time. Directory `<cache>/<model>/token_learning_times/`: `fits.parquet` (row g = "
        "canonical index g: loss_initial, loss_final, midpoint_x, width, r2, rms, midpoint_step float32, flags "
        "uint8), `points.parquet` (per step: name, step_number, x, mean_loss, mean_fitted), `summary.json`, "
        "`spectrum.parquet` (the learning-time spectrum per bin: tokens, measured and reconstructed −dL̄/dx) and "
        "`spectrum_summary.json` (reconstruction_error, explained_fraction, learning-step quartiles)."
    ),
)
def token_learning_times(
    context: dg.AssetExecutionContext, pile_losses: dict, learning_settings: LearningTimeSettings
) -> dict:
    model, settings = context.partition_key, learning_settings
    every = by_step(pile_losses)
    tables = {s: t for s, t in every.items() if step_number(s) >= settings.min_step}
    if len(tables) < 2:
        raise FileNotFoundError(
            f"token_learning_times of {model} needs pile_losses of ≥ 2 steps from step {settings.min_step} on; "
            f"materialized: {', '.join(every) or 'none'}")
    total = len(next(iter(tables.values())))
    steps = list(tables)
    context.log.info(f"{model}: fitting {total:,} tokens over {len(steps)} steps ({steps[0]} … {steps[-1]}), "
                     f"{settings.worker_count()} workers, {settings.chunk_tokens:,} tokens per chunk")
    fits = fit_learning_times(tables, settings=settings.for_model(), chunk_tokens=settings.chunk_tokens,
                              workers=settings.worker_count(), progress=RateLog(context.log.info, total, "tokens"))
    fits.summary.update(model=model, min_step=settings.min_step)
    spectrum = learning_time_spectrum(fits, bins=settings.spectrum_bins)
    quartiles = spectrum.summary["learning_step_quartiles"]
    context.add_output_metadata({
        **_fit_metadata(fits.summary),
        "steps_used": len(steps), "steps": ", ".join(steps), "min_step": settings.min_step,
        "reconstruction_error": round(spectrum.summary["reconstruction_error"], 4),
        "explained_fraction": round(spectrum.summary["explained_fraction"], 4),
        "fitted_all_error": round(spectrum.summary["fitted_all_error"], 4),
        "median_learning_step": round(quartiles[1], 1),
        "learning_step_quartiles": dg.MetadataValue.json([round(q, 1) for q in quartiles]),
    })
    return {**fits.tables(), **spectrum.tables()}


def _parameter_count(model: str, step: str, checkpoint: dict | None, embeddings: bool) -> int:
    """Parameters of ``model`` from the ``config.json`` of its stored ``model_checkpoint``."""
    if checkpoint is None:
        raise FileNotFoundError(f"no model_checkpoint of {model} at {step}: materialize it (its config.json "
                                "gives the parameter count)")
    config = Path(checkpoint["checkpoint"]["snapshot_dir"]) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"model_checkpoint of {model} at {step} points to {config}, which does not exist")
    return gptneox_parameter_count(json.loads(config.read_text(encoding="utf-8")), embeddings=embeddings)


def _by_model(partitions: dict) -> dict:
    return {partition_parts(key)[0]: value for key, value in partitions.items()}


@dg.asset(
    partitions_def=family_step_partitions,
    ins={"pile_losses": dg.AssetIn(**_EVERY_MODEL), "model_checkpoint": dg.AssetIn(**_EVERY_MODEL)},
    group_name="learning",
    code_version="1",
    automation_condition=follow_upstream_aggregate(),
    description=(
        "Token learning across model scale, per family × step (e.g. pythia at step143000, or pythia-v0): each "
        "token's loss against the parameter count N of the family's models whose pile_losses exist at that step "
        "(N from each model's config.json via model_checkpoint), fitted by the same sigmoid in log10 N — "
        "'learned at size N' and sharp (the 10–90 % transition within the median gap between neighbouring sizes) "
        "or gradual. Needs ≥ 6 sizes to be well determined. Directory "
        "`<cache>/families/<family>/<step>/token_scale_curves/`: `fits.parquet` (row g = canonical index g; "
        "midpoint_parameters and sharp instead of midpoint_step), `points.parquet` (per model: name, "
        "num_parameters, x, mean_loss, mean_fitted), `summary.json` (+ models, sharp, gradual) and `page.html`."
    ),
)
def token_scale_curves(
    context: dg.AssetExecutionContext, pile_losses: dict, model_checkpoint: dict, scale_settings: ScaleCurveSettings
) -> dict:
    family, step = family_and_step(context)
    settings, tables, checkpoints = scale_settings, _by_model(pile_losses), _by_model(model_checkpoint)
    if len(tables) < 2:
        raise FileNotFoundError(f"token_scale_curves of {family} at {step} needs pile_losses of ≥ 2 of its models "
                                f"({', '.join(FAMILIES[family])}); materialized: {', '.join(tables) or 'none'}")
    sizes = {m: _parameter_count(m, step, checkpoints.get(m), settings.embeddings) for m in tables}
    total = len(next(iter(tables.values())))
    context.log.info(f"{family} {step}: fitting {total:,} tokens across {len(tables)} sizes "
                     f"({', '.join(f'{m} {n:,}' for m, n in sorted(sizes.items(), key=lambda kv: kv[1]))})")
    fits = fit_scale_curves(tables, sizes, settings=settings.for_model(), chunk_tokens=settings.chunk_tokens,
                            workers=settings.worker_count(), progress=RateLog(context.log.info, total, "tokens"))
    missing = [m for m in FAMILIES[family] if m not in tables]
    fits.summary.update(family=family, step=step, models_missing=missing, embeddings=settings.embeddings)
    s = fits.summary
    context.add_output_metadata({
        **_fit_metadata(s),
        "family": family, "step": step, "models_used": len(tables), "models": ", ".join(s["models"]),
        "models_missing": ", ".join(missing) or "none",
        "parameters": dg.MetadataValue.md(
            fits.points[["name", "num_parameters", "mean_loss"]].to_markdown(index=False)),
        "sharp": s["sharp"], "gradual": s["gradual"],
        "sharp_fraction_of_well_fit": round(s["sharp"] / s["well_fit"], 4) if s["well_fit"] else float("nan"),
        "sharp_max_transition_decades": round(s["sharp_max_transition_decades"], 4),
    })
    return {**fits.tables(), "page": render_scale_page(family, step, fits.frame(), fits.points, s)}
