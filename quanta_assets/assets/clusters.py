"""``quanta_clusters`` (per checkpoint): spectral clustering of the similarity matrix."""

import time

import dagster as dg
import numpy as np
import pandas as pd

from quanta_assets.automation import follow_upstream
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.settings import ClusterSettings
from quanta_core import clustering
from quanta_core.canonical import CanonicalCorpus, index_to_doc_pos


def clusters_table(
    indices: np.ndarray, labels: np.ndarray, corpus: CanonicalCorpus, losses: np.ndarray
) -> pd.DataFrame:
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
    automation_condition=follow_upstream(),
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
    pile_losses: np.ndarray,
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
    table = clusters_table(indices, labels, CanonicalCorpus.from_arrays(pile_canonical), np.asarray(pile_losses))
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
