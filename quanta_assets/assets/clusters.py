"""``quanta_clusters`` (spectral clustering of the similarity matrix) and ``quanta_report`` (the
HTML page to browse them), both per checkpoint (model × step)."""

import time
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from quanta_core import clustering, dynamics, report
from quanta_core.canonical import CanonicalCorpus, index_to_doc_pos
from quanta_core.token_bytes import token_bytes_table
from quanta_core.tokenizer import load_tokenizer
from quanta_assets.partitions import DEMO_MODEL, checkpoint_partitions, model_and_step
from quanta_assets.resources import PileSource, QuantaCache

PYTHIA_NUM_CLUSTERS = 400  # the paper: 400 clusters of 10,000 tokens
DEMO_NUM_CLUSTERS = 30  # the demo suite clusters far fewer tokens


class ClusterSettings(dg.ConfigurableResource):
    """Settings of ``quanta_clusters`` (the original's ``clusters_from_similarity_matrix_v1.py``).

    ``num_clusters``: k; ``None`` = the model's default (400 for Pythia, as the paper; 30 for the
    demo suite). ``n_init``: k-means restarts (30). ``random_state``: seed of the spectral
    embedding and k-means (0).
    """

    num_clusters: Optional[int] = None
    n_init: int = clustering.N_INIT
    random_state: int = clustering.RANDOM_STATE

    def clusters_for(self, model: str) -> int:
        if self.num_clusters is not None:
            return int(self.num_clusters)
        return DEMO_NUM_CLUSTERS if model == DEMO_MODEL else PYTHIA_NUM_CLUSTERS


class ReportSettings(dg.ConfigurableResource):
    """Settings of ``quanta_report`` (the original's ``html_from_clusters.py``): tokens of context
    shown ``before`` (300) and ``after`` (0) each sample's target token."""

    before: int = report.BEFORE
    after: int = report.AFTER


RESOURCES = {"cluster_settings": ClusterSettings(), "report_settings": ReportSettings()}


def _losses(pile_losses) -> np.ndarray:
    if isinstance(pile_losses, dict):  # stored as a directory: take its loss array
        pile_losses = pile_losses.get("losses", next(iter(pile_losses.values())))
    return np.asarray(pile_losses)


def clusters_table(indices: np.ndarray, labels: np.ndarray, corpus: CanonicalCorpus, losses: np.ndarray) -> pd.DataFrame:
    """One row per selected token, in selection order: ``cluster`` (rank), ``index`` (canonical),
    ``document``, ``position`` (of the target in its document), ``token_id`` (target), ``loss`` (nats)."""
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and indices.max() >= len(losses):
        raise ValueError(f"selected canonical index {indices.max()} is beyond the loss table ({len(losses)} tokens)")
    doc, pos = index_to_doc_pos(indices, corpus.starts)
    return pd.DataFrame(
        {
            "cluster": np.asarray(labels, dtype=np.int64),
            "index": indices,
            "document": doc.astype(np.int64),
            "position": pos.astype(np.int64),
            "token_id": corpus.ids[corpus.offsets[doc] + pos].astype(np.int64),
            "loss": np.asarray(losses[indices], dtype=np.float32),
        }
    )


@dg.asset(
    partitions_def=checkpoint_partitions,
    group_name="quanta",
    code_version="1",
    description=(
        "Candidate quanta: spectral clustering of the QDG similarity matrix (affinity "
        "1 − arccos(C)/π; scikit-learn SpectralClustering, precomputed affinity, k-means labels, "
        "n_init 30, random_state 0; k = 400 for Pythia). Cluster numbers are ranks: 0 is the largest, "
        "ties by first appearance. Directory `<cache>/<model>/<step>/quanta_clusters/`: `labels.npy` "
        "int64 [S] (cluster rank of each selected token, in quanta_similarity's order) and "
        "`tokens.parquet` (one row per selected token: cluster, index = canonical index, document, "
        "position, token_id of the target, loss in nats)."
    ),
)
def quanta_clusters(
    context: dg.AssetExecutionContext,
    quanta_similarity: dict,
    pile_canonical: dict,
    pile_losses,
    cluster_settings: ClusterSettings,
) -> dict:
    model, step = model_and_step(context)
    indices = np.asarray(quanta_similarity["indices"], dtype=np.int64)
    matrix = quanta_similarity["matrix"]
    if matrix.shape != (len(indices), len(indices)):
        raise ValueError(f"quanta_similarity of {model} {step}: matrix {matrix.shape} does not match "
                         f"{len(indices)} indices")
    k = cluster_settings.clusters_for(model)
    context.log.info(f"spectral clustering of {len(indices):,} tokens into {k} clusters "
                     f"(n_init={cluster_settings.n_init}, random_state={cluster_settings.random_state})")
    started = time.perf_counter()
    embedding = clustering.spectral_embedding(np.asarray(matrix), k, cluster_settings.random_state)
    embedded = time.perf_counter()
    context.log.info(f"spectral embedding done in {embedded - started:.1f} s; k-means next")
    labels = embedding.kmeans(k, cluster_settings.n_init)
    seconds = time.perf_counter() - started
    table = clusters_table(indices, labels, CanonicalCorpus.from_arrays(pile_canonical), _losses(pile_losses))
    sizes = clustering.cluster_sizes(labels)
    context.add_output_metadata(
        {
            "num_tokens": len(indices),
            "num_clusters": k,
            "n_init": cluster_settings.n_init,
            "random_state": cluster_settings.random_state,
            "clustering_seconds": round(seconds, 2),
            "embedding_seconds": round(embedded - started, 2),
            "largest_clusters": dg.MetadataValue.json(sizes[:10].tolist()),
            "median_cluster_size": float(np.median(sizes)),
            "smallest_cluster_size": int(sizes[-1]),
            "singleton_clusters": int((sizes == 1).sum()),
        }
    )
    return {"labels": labels, "tokens": table}


@dg.asset(
    partitions_def=checkpoint_partitions,
    group_name="quanta",
    code_version="2",
    deps=[
        dg.AssetDep(
            "quanta_training_dynamics",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="model"),
        )
    ],
    description=(
        "The cluster report: one self-contained HTML file (no network access) to browse every cluster "
        "of quanta_clusters — dropdown and ←/→ keys, links #cluster-N, sort by size or mean loss, search "
        "by cluster number or predicted token; per cluster its size, loss, predicted tokens and samples "
        "with 300 tokens of context before the highlighted target. When quanta_training_dynamics of "
        "the model follows this step's clusters, each cluster also shows its loss over training "
        "(sparkline) and learned-at step, sortable, plus the distribution of learned-at steps. "
        "File `<cache>/<model>/<step>/quanta_report.html`; open it in a browser."
    ),
)
def quanta_report(
    context: dg.AssetExecutionContext,
    quanta_clusters: dict,
    pile_canonical: dict,
    pile: PileSource,
    cache: QuantaCache,
    report_settings: ReportSettings,
) -> str:
    model, step = model_and_step(context)
    started = time.perf_counter()
    tokens = quanta_clusters["tokens"]
    extras, sections = dynamics.report_extras(cache.path / model / "quanta_training_dynamics", step)
    if extras:
        context.log.info(f"adding loss-over-training curves of {len(extras)} clusters")
    else:
        context.log.info(f"no quanta_training_dynamics of {model} follows the clusters of {step}: "
                         "the report has no loss-over-training curves")
    html = report.render_report(
        tokens,
        CanonicalCorpus.from_arrays(pile_canonical),
        token_bytes_table(load_tokenizer(pile.tokenizer_path)),
        before=report_settings.before,
        after=report_settings.after,
        title=f"Quanta clusters · {model} · {step}",
        details={
            "model": model,
            "step": step,
            "clusters asset": f"{model}/{step}/quanta_clusters",
        },
        cluster_extras=extras or None,
        extra_sections_html=sections or None,
    )
    size = len(html.encode("utf-8"))
    context.log.info(f"report: {size / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    context.add_output_metadata(
        {
            "file_size_bytes": size,
            "file_size_mb": round(size / 1e6, 2),
            "num_clusters": int(tokens["cluster"].max()) + 1,
            "num_samples": len(tokens),
            "before": report_settings.before,
            "after": report_settings.after,
            "render_seconds": round(time.perf_counter() - started, 2),
            "training_dynamics": bool(extras),
        }
    )
    return html
