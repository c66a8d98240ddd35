"""``quanta_training_dynamics``: the clusters of one checkpoint followed across training.

Per model (partitioned by ``model`` only). Reads the cache directly, not through the IO manager,
because it needs every step whose loss table exists, lazily (memory-mapped, one step at a time):
``<cache>/<model>/<step>/pile_losses.npy`` and the reference step's
``<cache>/<model>/<step>/quanta_clusters/``. Lineage to both is declared with ``deps`` mapped from
the model × step partitions to the model dimension.
"""

import time
import warnings
from pathlib import Path
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from quanta_core import dynamics
from quanta_assets.partitions import DEMO_MODEL, model_partitions, step_partitions
from quanta_assets.resources import PileSource, QuantaCache

PYTHIA_THRESHOLD_NATS = 0.1
"""Pythia default: the original's token-selection threshold (0.1 nats = 0.1443 bits), so a
cluster counts as learned once its mean loss is as low as the losses that got its tokens selected."""

DEMO_THRESHOLD_NATS = 1.0
"""Demo-suite default: the small demo model never reaches Pythia's losses; 1 nat separates its
early (≈ ln 50304 ≈ 10.8 nats at step0) from its trained loss on the clustered tokens."""

CLUSTERS_ASSET = "quanta_clusters"
LOSSES_ASSET = "pile_losses"

with warnings.catch_warnings():  # the mapping is marked beta in Dagster 1.13
    warnings.simplefilter("ignore", dg.BetaWarning)
    _BY_MODEL = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model")


class TrainingDynamicsSettings(dg.ConfigurableResource):
    """Settings of ``quanta_training_dynamics``.

    ``threshold_nats``: a cluster is learned at the first step from which its ``statistic`` loss
    stays strictly below this (nats) at every later step; ``None`` = the model's default
    (0.1 nats, the original's selection threshold, for Pythia; 1.0 nats for the demo suite).
    ``reference_step``: the step whose clusters are followed (e.g. ``"step143000"``); ``None`` =
    the latest step whose ``quanta_clusters`` exist for the model.
    ``statistic``: which per-cluster summary the threshold applies to: ``mean`` (default),
    ``median``, ``q25`` or ``q75``.
    ``top_tokens``: how many most common target tokens to show per cluster on the page (0: none).
    """

    threshold_nats: Optional[float] = None
    reference_step: Optional[str] = None
    statistic: str = "mean"
    top_tokens: int = 5

    def threshold_for(self, model: str) -> float:
        if self.threshold_nats is not None:
            return float(self.threshold_nats)
        return DEMO_THRESHOLD_NATS if model == DEMO_MODEL else PYTHIA_THRESHOLD_NATS


RESOURCES = {"dynamics_settings": TrainingDynamicsSettings()}


def _steps_with(model_dir: Path, relative: str) -> list[str]:
    """Step partition keys (in step order) for which ``<model_dir>/<step>/<relative>`` exists."""
    steps = [s for s in step_partitions.get_partition_keys() if (model_dir / s / relative).exists()]
    return sorted(steps, key=dynamics.step_number)


def read_cluster_assignment(clusters_dir: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """(canonical indices int64 [S], cluster ranks int64 [S], tokens table) of a ``quanta_clusters``
    directory: ``tokens.parquet`` with columns ``index`` and ``cluster`` (checked against
    ``labels.npy`` when both exist)."""
    tokens_path = clusters_dir / "tokens.parquet"
    if not tokens_path.is_file():
        raise FileNotFoundError(f"{tokens_path} not found: materialize {CLUSTERS_ASSET} for this step first")
    tokens = pd.read_parquet(tokens_path)
    missing = {"index", "cluster"} - set(tokens.columns)
    if missing:
        raise ValueError(f"{tokens_path} lacks columns {sorted(missing)} (has {list(tokens.columns)})")
    indices = tokens["index"].to_numpy(dtype=np.int64)
    labels = tokens["cluster"].to_numpy(dtype=np.int64)
    labels_path = clusters_dir / "labels.npy"
    if labels_path.is_file():
        stored = np.load(labels_path, allow_pickle=False)
        if not np.array_equal(np.sort(stored), np.sort(labels)):
            raise ValueError(f"{tokens_path} and {labels_path} disagree on the clusters")
    return indices, labels, tokens


def _top_tokens(tokens: pd.DataFrame, count: int, tokenizer_path: Optional[str]) -> dict[int, list[str]]:
    """Cluster → its ``count`` most common target tokens, decoded (untrusted text: escaped later)."""
    if count <= 0 or "token_id" not in tokens.columns:
        return {}
    from quanta_core.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_path)
    out = {}
    for cluster, ids in tokens.groupby("cluster")["token_id"]:
        common = ids.value_counts().head(count).index
        out[int(cluster)] = [tokenizer.decode([int(t)]).replace("\n", "⏎") for t in common]
    return out


def _markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


@dg.asset(
    partitions_def=model_partitions,
    deps=[
        dg.AssetDep(CLUSTERS_ASSET, partition_mapping=_BY_MODEL),
        dg.AssetDep(LOSSES_ASSET, partition_mapping=_BY_MODEL),
    ],
    group_name="dynamics",
    code_version="1",
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
    cache: QuantaCache,
    pile: PileSource,
    dynamics_settings: TrainingDynamicsSettings,
) -> dict:
    model = context.partition_key
    model_dir = cache.path / model
    settings = dynamics_settings
    threshold = settings.threshold_for(model)

    if settings.statistic not in dynamics.STATISTICS:
        raise ValueError(f"dynamics_settings.statistic must be one of {dynamics.STATISTICS}, got {settings.statistic!r}")
    if settings.reference_step is not None:
        dynamics.step_number(settings.reference_step)  # a clear error for a malformed name
    with_clusters = _steps_with(model_dir, CLUSTERS_ASSET)
    reference = settings.reference_step or (with_clusters[-1] if with_clusters else None)
    if reference is None:
        raise FileNotFoundError(
            f"no {CLUSTERS_ASSET} for model {model} under {model_dir}/<step>/: materialize it for a step first"
        )
    indices, labels, tokens = read_cluster_assignment(model_dir / reference / CLUSTERS_ASSET)

    steps = _steps_with(model_dir, f"{LOSSES_ASSET}.npy")
    if not steps:
        raise FileNotFoundError(f"no {LOSSES_ASSET}.npy for model {model} under {model_dir}/<step>/")
    tables = {step: model_dir / step / f"{LOSSES_ASSET}.npy" for step in steps}
    sizes = {step: int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0]) for step, path in tables.items()}
    if len(set(sizes.values())) > 1:
        context.log.warning(f"loss tables differ in length across steps: {sorted(set(sizes.values()))}")
    context.log.info(
        f"{model}: following {len(np.unique(labels))} clusters ({len(indices):,} tokens) of {reference} "
        f"over {len(steps)} steps ({steps[0]} … {steps[-1]})"
    )

    started = time.perf_counter()
    last_log = [started]

    def progress(done: int, total: int, step: str) -> None:
        now = time.perf_counter()
        if now - last_log[0] > 10 or done == total:
            last_log[0] = now
            rate = done / max(now - started, 1e-9)
            context.log.info(f"{done}/{total} steps (last {step}), {rate:.1f} steps/s, ETA {(total - done) / rate:.0f} s")

    curves = dynamics.cluster_loss_curves(indices, labels, tables, progress=progress)
    learned = dynamics.learned_at(curves, threshold, statistic=settings.statistic)
    seconds = time.perf_counter() - started

    used = {
        "threshold_nats": threshold,
        "threshold_default": settings.threshold_nats is None,
        "statistic": settings.statistic,
        "reference_step": reference,
        "reference_default": settings.reference_step is None,
        "top_tokens": settings.top_tokens,
    }
    report = model_dir / reference / "quanta_report.html"
    page = dynamics.render_dynamics_page(
        model,
        reference,
        curves,
        learned,
        settings=used,
        top_tokens=_top_tokens(tokens, settings.top_tokens, pile.tokenizer_path),
        report_href=f"../{reference}/quanta_report.html" if report.is_file() else None,
    )
    histogram = dynamics.learned_at_histogram(learned)
    histogram["cumulative_fraction"] = histogram["cumulative_fraction"].round(3)
    summary = {
        "model": model,
        "reference_step": reference,
        "steps": steps,
        "num_clusters": int(len(learned)),
        "num_tokens": int(len(indices)),
        "num_learned": int(learned["learned_at_step"].notna().sum()),
        "settings": used,
    }
    context.add_output_metadata(
        {
            "reference_step": reference,
            "steps_used": len(steps),
            "steps": ", ".join(steps),
            "clusters": int(len(learned)),
            "tokens": int(len(indices)),
            "clusters_learned": summary["num_learned"],
            "learned_at_histogram": dg.MetadataValue.md(_markdown(histogram)),
            "loss_table_entries": max(sizes.values()),
            "seconds": round(seconds, 2),
            **{f"setting_{k}": v for k, v in used.items()},
        }
    )
    return {"curves": curves, "learned_at": learned, "summary": summary, "page": page}
