"""``quanta_cluster_stability`` and ``quanta_cluster_sweep`` (per checkpoint; one per study): which
clusters are real, and the paper's rank-frequency envelope (quanta_core.clustering.stability, .sweep)."""

import dagster as dg
import numpy as np

from quanta_assets.automation import follow_upstream
from quanta_assets.code_versions import require_declared_settings
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.studies import DEFAULT_STUDY, Study
from quanta_core.clustering import paper
from quanta_core.clustering.stability import STABLE, cluster_stability
from quanta_core.clustering.sweep import sweep_similarity
from quanta_core.clustering.tokens import clusters_digest

STABILITY_DESCRIPTION = (
    "Which clusters of quanta_clusters are real: each cluster's clusterboot stability (mean best-match "
    "Jaccard over R re-clusterings of the same similarity with the same road and settings; scheme seeds = "
    "other random states, subsample = 80 % of the tokens, the whole clustering re-run), its band (< 0.6 "
    "unstable, 0.6–0.75 doubtful, ≥ 0.75 stable, ≥ 0.85 highly stable) and its coherence (mean cosine "
    "between its tokens) with a z-score against random groups of the same size. Directory "
    "`<cache>/<model>/<step>/quanta_cluster_stability/`: `clusters.parquet` (cluster, size, stability, band, "
    "recovered, dissolved, coherence, null_coherence, null_std, coherence_z) and `summary.json` "
    "(fraction_stable, median_stability, mean_ari between re-clusterings, bands, settings, seconds). The "
    "non-blocking check enough_stable_clusters warns when fewer than stability_settings.min_stable_fraction "
    "of the clusters are stable."
)
SWEEP_DESCRIPTION = (
    "The paper's sweep: the similarity clustered at each of the paper's 27 cluster counts (capped at S/2), "
    "one spectral embedding reused across k; the rank-frequency envelope (largest size at each rank over "
    "the ks) and its log-log slope over ranks 100–1000 (scaled by S/10,000 below 10,000 tokens) with a "
    "bootstrap interval. Directory `<cache>/<model>/<step>/quanta_cluster_sweep/`: `labels.parquet` (one "
    "int32 column k<k> of ranked labels per count, row = token in quanta_similarity's order), "
    "`envelope.parquet` (rank, size) and `summary.json` (ks, envelope_slope, slope_interval, slope_ranks; "
    "on the paper's partition also the paper's −1.24 and its labels' −1.2376)."
)


def stability_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_cluster_stability`` of ``study``, with its non-blocking check ``enough_stable_clusters``."""
    settings_key, cluster_key = study.resource_key("stability_settings"), study.resource_key("cluster_settings")
    key = dg.AssetKey([*study.key_prefix, "quanta_cluster_stability"])

    @dg.asset(
        key=key,
        partitions_def=checkpoint_partitions,
        ins={"quanta_similarity": dg.AssetIn(key=study.similarity_key),
             "quanta_clusters": dg.AssetIn(key=[*study.key_prefix, "quanta_clusters"])},
        required_resource_keys={settings_key, cluster_key},
        group_name=study.group("clusters"),
        code_version="1",
        automation_condition=follow_upstream(),
        description=STABILITY_DESCRIPTION + study.note(),
        check_specs=[dg.AssetCheckSpec("enough_stable_clusters", asset=key, blocking=False,
                                       description="At least stability_settings.min_stable_fraction of the "
                                       "clusters are stable (stability ≥ 0.75); warns otherwise.")],
    )
    def quanta_cluster_stability(context: dg.AssetExecutionContext, quanta_similarity: dict, quanta_clusters: dict):
        require_declared_settings(context)
        model, step = model_and_step(context)
        settings = getattr(context.resources, settings_key)
        options = getattr(context.resources, cluster_key).for_model(model)
        context.log.info(f"stability of {options.num_clusters} clusters of {model} {step}: {settings.resamples} "
                         f"re-clusterings, scheme {settings.scheme}")
        labels = np.asarray(quanta_clusters["labels"])
        table, summary = cluster_stability(quanta_similarity, labels, options, settings.for_model(),
                                           progress=context.log.info)
        summary["clusters_digest"] = clusters_digest(quanta_similarity["indices"], labels)
        stable = summary["fraction_stable"]
        context.log.info(f"{stable:.0%} of the clusters are stable (≥ {STABLE}); median stability "
                         f"{summary['median_stability']:.2f}; mean ARI between re-clusterings {summary['mean_ari']}")
        yield dg.Output({"clusters": table, "summary": summary}, metadata={
            "fraction_stable": round(stable, 4), "median_stability": round(summary["median_stability"], 4),
            "mean_ari": summary["mean_ari"], "median_coherence_z": round(summary["median_coherence_z"], 2),
            "bands": dg.MetadataValue.json(summary["bands"]), "scheme": summary["scheme"],
            "resamples": summary["resamples"], "seconds": summary["seconds"]})
        yield dg.AssetCheckResult(
            check_name="enough_stable_clusters", passed=bool(stable >= settings.min_stable_fraction),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"fraction_stable": round(stable, 4), "min_stable_fraction": settings.min_stable_fraction},
            description=None if stable >= settings.min_stable_fraction else (
                f"only {stable:.0%} of the clusters are stable (≥ {STABLE}); the rest may be artifacts of the "
                "clustering rather than quanta"))

    return quanta_cluster_stability


def sweep_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_cluster_sweep`` of ``study``."""
    cluster_key = study.resource_key("cluster_settings")

    @dg.asset(
        name="quanta_cluster_sweep",
        key_prefix=study.key_prefix,
        partitions_def=checkpoint_partitions,
        ins={"quanta_similarity": dg.AssetIn(key=study.similarity_key)},
        required_resource_keys={cluster_key},
        group_name=study.group("clusters"),
        code_version="1",
        automation_condition=follow_upstream(),
        description=SWEEP_DESCRIPTION + study.note(),
    )
    def quanta_cluster_sweep(context: dg.AssetExecutionContext, quanta_similarity: dict) -> dict:
        require_declared_settings(context)
        model, step = model_and_step(context)
        options = getattr(context.resources, cluster_key).for_model(model)
        sweep = sweep_similarity(quanta_similarity, options, progress=context.log.info)
        comparable = paper.paper_comparable(model, step, len(quanta_similarity["indices"]), options.num_clusters)
        summary = sweep.summary(paper=comparable)
        context.log.info(f"envelope slope {sweep.slope:.3f} over ranks {sweep.ranks[0]}–{sweep.ranks[1]} "
                         f"({len(sweep.labels)} cluster counts)")
        context.add_output_metadata({
            "envelope_slope": summary["envelope_slope"], "slope_interval": str(summary["slope_interval"]),
            "slope_ranks": str(summary["slope_ranks"]), "cluster_counts": len(sweep.labels),
            **({"paper_envelope_slope": summary["paper_envelope_slope"]} if comparable else {})})
        return {"labels": sweep.labels_table(), "envelope": sweep.envelope_table(), "summary": summary}

    return quanta_cluster_sweep


quanta_cluster_stability = stability_asset()
quanta_cluster_sweep = sweep_asset()
