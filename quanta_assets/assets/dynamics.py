"""``quanta_training_dynamics`` (per model; one per study): the clusters of one checkpoint followed across training.

Its inputs are every step of the model, through the IO manager: each step's ``pile_losses``
(memory-mapped, read lazily one step at a time) and each step's ``quanta_clusters`` (the
reference step's are followed); steps never materialized are left out.
"""

import time
from pathlib import Path

import dagster as dg
import numpy as np

from quanta_assets.automation import follow_upstream_aggregate
from quanta_assets.code_versions import require_declared_settings
from quanta_assets.io_manager import by_step
from quanta_assets.partitions import BY_MODEL, model_partitions
from quanta_assets.settings import TrainingDynamicsSettings
from quanta_assets.studies import DEFAULT_STUDY, Study
from quanta_core.clustering.tokens import cluster_assignment, clusters_digest
from quanta_core.learning import dynamics
from quanta_core.learning.clusters import learned_at_once
from quanta_core.report import dynamics_page, learning_page
from quanta_core.report.learning_page import LearningTimesView

_EVERY_STEP = {"partition_mapping": BY_MODEL, "metadata": {"allow_missing_partitions": True}}


def _learned_together(context, learning_dir, indices, labels, reference_table, settings: TrainingDynamicsSettings):
    """``(LearningTimesView, table, summary)`` of the learned-at-once test on the reference step's
    clusters, or ``(None, None, None)`` when the model has no ``token_learning_times``."""
    if learning_dir is None:
        context.log.info("no token_learning_times of this model: the page has no learning-time spectrum and no "
                         "learned-at-once test")
        return None, None, None
    view = LearningTimesView.read(learning_dir)
    reference_losses = np.asarray(reference_table[indices], dtype=np.float64)  # each clustered token's loss, nats
    table, summary = learned_at_once(indices, labels, view.fits, reference_losses, loss_bins=settings.loss_bins,
                                     permutations=settings.permutations, min_tokens=settings.min_cluster_tokens,
                                     alpha=settings.alpha, seed=settings.permutation_seed)
    context.log.info(learning_page.together_sentence(summary))
    return view, table, summary


def _together_metadata(view, summary) -> dict:
    if summary is None:
        return {"learned_together": False}
    keys = ("tested", "tighter", "fraction_tighter", "fraction_p_below_alpha", "median_ratio", "global_p_value",
            "permutations", "loss_bins", "alpha")
    return {
        "learned_together": True,
        "learned_together_test": summary["test"],
        "learned_together_baseline": learning_page.BASELINE,
        **{f"learned_together_{k}": round(v, 4) if isinstance(v, float) else v
           for k, v in summary.items() if k in keys},
        "learning_reconstruction_error": round(view.spectrum_summary["reconstruction_error"], 4),
    }


DESCRIPTION = (
    "Quanta across training. The clusters of a reference checkpoint (setting; default the latest step with "
    "quanta_clusters) followed through every checkpoint of the model whose pile_losses exist. Directory "
    "`<cache>/<model>/quanta_training_dynamics/`: `curves.parquet` (one row per step × cluster: step, step_number, "
    "cluster, n, mean, median, q25, q75 of the cluster's token losses in nats, overall_mean = mean loss of the "
    "whole table at that step), `learned_at.parquet` (one row per cluster: learned_at step name or null, "
    "learned_at_step, first_loss, last_loss, threshold_nats, statistic; a cluster is learned at the first step from"
    " which its mean loss stays strictly below the threshold at every later step), `summary.json` (reference step, "
    "clusters_digest of the clusters followed, steps, settings) and `page.html` (the model page: distribution of "
    "learned-at steps, the learning-time spectrum, the learned-at-once test and a sortable table of clusters with "
    "loss-over-training sparklines). With token_learning_times of the model: `learned_together.parquet` (per "
    "cluster: n, n_fit, tested, median_step, iqr and null_iqr_median in decades, ratio, p_value, q_value, tighter) "
    "and `learned_together_summary.json` — are a cluster's tokens learned more tightly together than random groups "
    "of the same size and loss? (stratified permutation test, Benjamini–Hochberg across clusters)."
)


def dynamics_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_training_dynamics`` of ``study`` (its clusters at every step, its ``dynamics_settings``)."""
    settings_key = study.resource_key("dynamics_settings")

    @dg.asset(
        name="quanta_training_dynamics",
        key_prefix=study.key_prefix,
        partitions_def=model_partitions,
        ins={
            "quanta_clusters": dg.AssetIn(key=[*study.key_prefix, "quanta_clusters"], **_EVERY_STEP),
            "pile_losses": dg.AssetIn(key="pile_losses", **_EVERY_STEP),
            # the model's token learning times (optional): the spectrum and the learned-at-once test
            "token_learning_times": dg.AssetIn(key="token_learning_times",
                                               metadata={"allow_missing_partitions": True, "as_path": True}),
        },
        required_resource_keys={settings_key, "pile"},
        group_name=study.group("dynamics"),
        code_version="3",  # 3: summary.json records the clusters' digest
        automation_condition=follow_upstream_aggregate(),
        description=DESCRIPTION + study.note(),
    )
    def quanta_training_dynamics(context: dg.AssetExecutionContext, quanta_clusters: dict, pile_losses: dict,
                                 token_learning_times: Path | None) -> dict:
        require_declared_settings(context)
        return _dynamics(context, study, getattr(context.resources, settings_key), quanta_clusters, pile_losses,
                         token_learning_times)

    return quanta_training_dynamics


quanta_training_dynamics = dynamics_asset()


def _dynamics(context, study: Study, settings: TrainingDynamicsSettings, quanta_clusters: dict, pile_losses: dict,
              token_learning_times: Path | None) -> dict:
    model = context.partition_key
    clusters, tables = by_step(quanta_clusters), by_step(pile_losses)
    reference = dynamics.reference_step(model, list(clusters), settings.reference_step)
    indices, labels, tokens = cluster_assignment(clusters[reference], f"{model} {reference}")
    if not tables:
        raise FileNotFoundError(f"no pile_losses for model {model}: materialize it for some steps first")
    sizes = {step: len(table) for step, table in tables.items()}
    if len(set(sizes.values())) > 1:
        context.log.warning(f"loss tables differ in length across steps: {sorted(set(sizes.values()))}")
    steps = list(tables)
    context.log.info(f"{model}: following {len(np.unique(labels))} clusters ({len(indices):,} tokens) of {reference} "
                     f"over {len(steps)} steps ({steps[0]} … {steps[-1]})")
    started = time.perf_counter()
    curves = dynamics.cluster_loss_curves(indices, labels, tables, progress=_step_progress(context, len(steps)))
    threshold = settings.for_model(model)
    learned = dynamics.learned_at(curves, threshold, statistic=settings.statistic)
    if reference not in tables:
        raise FileNotFoundError(f"no pile_losses of {model} at the reference step {reference}")
    view, together, together_summary = _learned_together(context, token_learning_times, indices, labels,
                                                         tables[reference], settings)
    used = {"threshold_nats": threshold, "threshold_default": settings.threshold_nats is None,
            "statistic": settings.statistic, "reference_step": reference,
            "reference_default": settings.reference_step is None, "top_tokens": settings.top_tokens}
    page = dynamics_page.render_dynamics_page(
        model, reference, curves, learned, settings=used,
        top_tokens=dynamics_page.top_tokens(tokens, settings.top_tokens, context.resources.pile.tokenizer_path),
        report_href="/".join(["..", *[".."] * len(study.key_prefix), reference, *study.key_prefix,
                              "quanta_report.html"]),
        learning=view, together=None if together is None else (together, together_summary),
    )
    summary = {"model": model, "reference_step": reference, "steps": steps, "num_clusters": int(len(learned)),
               "num_tokens": int(len(indices)), "num_learned": int(learned["learned_at_step"].notna().sum()),
               "clusters_digest": clusters_digest(indices, labels), "settings": used}
    histogram = dynamics.learned_at_histogram(learned).round({"cumulative_fraction": 3})
    context.add_output_metadata(
        {
            "reference_step": reference, "steps_used": len(steps), "steps": ", ".join(steps),
            "clusters": int(len(learned)), "tokens": int(len(indices)), "clusters_learned": summary["num_learned"],
            "learned_at_histogram": dg.MetadataValue.md(histogram.to_markdown(index=False)),
            "loss_table_entries": max(sizes.values()), "seconds": round(time.perf_counter() - started, 2),
            **{f"setting_{k}": v for k, v in used.items()},
            **_together_metadata(view, together_summary),
        }
    )
    out = {"curves": curves, "learned_at": learned, "summary": summary, "page": page}
    if together is not None:
        out.update(learned_together=together, learned_together_summary=together_summary)
    return out


def _step_progress(context, total: int):
    from quanta_core.progress import RateLog

    rate = RateLog(context.log.info, total, "steps")
    return lambda done, _total, step: rate(done, f"last {step}")
