"""``quanta_training_dynamics`` (per model): the clusters of one checkpoint followed across training.

Its inputs are every step of the model, through the IO manager: each step's ``pile_losses``
(memory-mapped, read lazily one step at a time) and each step's ``quanta_clusters`` (the
reference step's are followed); steps never materialized are left out.
"""

import time

import dagster as dg
import numpy as np
import pandas as pd

from quanta_assets.automation import follow_upstream_aggregate
from quanta_assets.io_manager import partition_parts
from quanta_assets.partitions import BY_MODEL, model_partitions
from quanta_assets.resources import PileSource
from quanta_assets.settings import TrainingDynamicsSettings
from quanta_core import dynamics, dynamics_page
from quanta_core.steps import sorted_steps, step_number

_EVERY_STEP = {"partition_mapping": BY_MODEL, "metadata": {"allow_missing_partitions": True}}


def _by_step(partitions: dict) -> dict:
    """``{"<model>|<step>": value}`` → ``{"<step>": value}`` in step order."""
    values = {partition_parts(key)[1]: value for key, value in partitions.items()}
    return {step: values[step] for step in sorted_steps(values)}


def cluster_assignment(clusters: dict, where: str) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(canonical indices int64 [S], cluster ranks int64 [S], tokens table) of a stored
    ``quanta_clusters`` value (``tokens`` with columns ``index`` and ``cluster``, checked against
    ``labels``)."""
    tokens = clusters.get("tokens")
    if tokens is None or not {"index", "cluster"} <= set(tokens.columns):
        raise ValueError(f"quanta_clusters of {where} has no tokens table with columns index and cluster")
    indices = tokens["index"].to_numpy(dtype=np.int64)
    labels = tokens["cluster"].to_numpy(dtype=np.int64)
    if "labels" in clusters and not np.array_equal(np.sort(np.asarray(clusters["labels"])), np.sort(labels)):
        raise ValueError(f"quanta_clusters of {where}: tokens.parquet and labels.npy disagree on the clusters")
    return indices, labels, tokens


def _top_tokens(tokens: pd.DataFrame, count: int, tokenizer_path) -> dict[int, list[str]]:
    """Cluster → its ``count`` most common target tokens, decoded (untrusted text: escaped later)."""
    if count <= 0 or "token_id" not in tokens.columns:
        return {}
    from quanta_core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    return {int(cluster): [tokenizer.decode([int(t)]).replace("\n", "⏎") for t in ids.value_counts().head(count).index]
            for cluster, ids in tokens.groupby("cluster")["token_id"]}


def _reference_step(model: str, clusters: dict, settings: TrainingDynamicsSettings) -> str:
    if settings.reference_step is not None:
        step_number(settings.reference_step)  # a clear error for a malformed name
        if settings.reference_step not in clusters:
            raise FileNotFoundError(f"no quanta_clusters of {model} at the reference step {settings.reference_step} "
                                    f"(materialized: {', '.join(clusters) or 'none'})")
        return settings.reference_step
    if not clusters:
        raise FileNotFoundError(f"no quanta_clusters for model {model}: materialize it for a step first")
    return list(clusters)[-1]


@dg.asset(
    partitions_def=model_partitions,
    ins={"quanta_clusters": dg.AssetIn(**_EVERY_STEP), "pile_losses": dg.AssetIn(**_EVERY_STEP)},
    group_name="dynamics",
    code_version="1",
    automation_condition=follow_upstream_aggregate(),
    description=(
        "Quanta across training. The clusters of a reference checkpoint (setting; default the latest "
        "step with quanta_clusters) followed through every checkpoint of the model whose pile_losses "
        "exist. Directory `<cache>/<model>/quanta_training_dynamics/`: `curves.parquet` (one row per "
        "step × cluster: step, step_number, cluster, n, mean, median, q25, q75 of the cluster's token "
        "losses in nats, overall_mean = mean loss of the whole table at that step), `learned_at.parquet` "
        "(one row per cluster: learned_at step name or null, learned_at_step, first_loss, last_loss, "
        "threshold_nats, statistic; a cluster is learned at the first step from which its mean loss "
        "stays strictly below the threshold at every later step), `summary.json` (reference step, "
        "steps, settings) and `page.html` (distribution of learned-at steps and a sortable table of "
        "clusters with loss-over-training sparklines)."
    ),
)
def quanta_training_dynamics(
    context: dg.AssetExecutionContext,
    quanta_clusters: dict,
    pile_losses: dict,
    pile: PileSource,
    dynamics_settings: TrainingDynamicsSettings,
) -> dict:
    model, settings = context.partition_key, dynamics_settings
    if settings.statistic not in dynamics.STATISTICS:
        raise ValueError(f"dynamics_settings.statistic must be one of {dynamics.STATISTICS}, "
                         f"got {settings.statistic!r}")
    clusters, tables = _by_step(quanta_clusters), _by_step(pile_losses)
    reference = _reference_step(model, clusters, settings)
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
    threshold = settings.threshold_for(model)
    learned = dynamics.learned_at(curves, threshold, statistic=settings.statistic)
    used = {"threshold_nats": threshold, "threshold_default": settings.threshold_nats is None,
            "statistic": settings.statistic, "reference_step": reference,
            "reference_default": settings.reference_step is None, "top_tokens": settings.top_tokens}
    page = dynamics_page.render_dynamics_page(
        model, reference, curves, learned, settings=used,
        top_tokens=_top_tokens(tokens, settings.top_tokens, pile.tokenizer_path),
        report_href=f"../{reference}/quanta_report.html",
    )
    summary = {"model": model, "reference_step": reference, "steps": steps, "num_clusters": int(len(learned)),
               "num_tokens": int(len(indices)), "num_learned": int(learned["learned_at_step"].notna().sum()),
               "settings": used}
    histogram = dynamics.learned_at_histogram(learned).round({"cumulative_fraction": 3})
    context.add_output_metadata(
        {
            "reference_step": reference, "steps_used": len(steps), "steps": ", ".join(steps),
            "clusters": int(len(learned)), "tokens": int(len(indices)), "clusters_learned": summary["num_learned"],
            "learned_at_histogram": dg.MetadataValue.md(histogram.to_markdown(index=False)),
            "loss_table_entries": max(sizes.values()), "seconds": round(time.perf_counter() - started, 2),
            **{f"setting_{k}": v for k, v in used.items()},
        }
    )
    return {"curves": curves, "learned_at": learned, "summary": summary, "page": page}


def _step_progress(context, total: int):
    from quanta_core.progress import RateLog

    rate = RateLog(context.log.info, total, "steps")
    return lambda done, _total, step: rate(done, f"last {step}")
