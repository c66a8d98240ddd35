"""``quanta_clusters`` (per checkpoint; one per study): spectral clustering of the similarity
(dense matrix or kNN graph)."""

import dagster as dg
import numpy as np

from quanta_assets.automation import follow_upstream
from quanta_assets.code_versions import require_declared_settings
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.settings import ClusterSettings
from quanta_assets.studies import DEFAULT_STUDY, Study
from quanta_core.clustering import paper
from quanta_core.clustering import roads as cluster_roads
from quanta_core.clustering import spectral as clustering
from quanta_core.clustering.tokens import clusters_digest, clusters_table
from quanta_core.corpus.canonical import CanonicalCorpus

DESCRIPTION = (
        "Candidate quanta: spectral clustering of the QDG similarity (affinity 1 − arccos(C)/π). From "
        "`matrix.npy` (the exact road): scikit-learn SpectralClustering's labels (precomputed affinity, "
        "k-means, n_init 30, random_state 0; k = 400 for Pythia; cluster_settings.eigen_solver arpack = "
        "scikit-learn's call, eigh = LAPACK). From `knn_indices.npy` + `knn_cosines.npy` (the sparse road, "
        "similarity_settings.neighbors > 0): the same affinity on the symmetrized kNN graph, scikit-learn's "
        "spectral_embedding with knn_eigen_solver (amg | lobpcg | arpack) and k-means (full | minibatch). "
        "Cluster numbers are ranks: 0 is the largest, ties by first appearance. Directory "
        "`<cache>/<model>/<step>/quanta_clusters/`: `labels.npy` int64 [S] (cluster rank of each selected "
        "token, in quanta_similarity's order) and `tokens.parquet` (one row per selected token: cluster, "
        "index = canonical index, document, position, token_id of the target, loss in nats). On the "
        "partition the paper clustered (pythia-70m-v0|step143000, 10,000 tokens), the metadata adds the ARI "
        "and NMI against the paper's published labels for the same k (paper_adjusted_rand, paper_nmi)."
)


def clusters_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_clusters`` of ``study`` (its key prefix, its similarity, its ``cluster_settings``)."""
    settings_key = study.resource_key("cluster_settings")

    @dg.asset(
        name="quanta_clusters",
        key_prefix=study.key_prefix,
        partitions_def=checkpoint_partitions,
        ins={"quanta_similarity": dg.AssetIn(key=study.similarity_key),
             "pile_canonical": dg.AssetIn(key="pile_canonical"), "pile_losses": dg.AssetIn(key="pile_losses")},
        required_resource_keys={settings_key},
        group_name=study.group("clusters"),
        code_version="1",
        automation_condition=follow_upstream(),
        description=DESCRIPTION + study.note(),
    )
    def quanta_clusters(
        context: dg.AssetExecutionContext,
        quanta_similarity: dict,
        pile_canonical: dict,
        pile_losses: np.ndarray,
    ) -> dict:
        require_declared_settings(context)
        return _cluster(context, getattr(context.resources, settings_key), quanta_similarity, pile_canonical,
                        pile_losses)

    return quanta_clusters


quanta_clusters = clusters_asset()


def _cluster(context, settings: ClusterSettings, quanta_similarity: dict, pile_canonical: dict,
             pile_losses: np.ndarray) -> dict:
    model, step = model_and_step(context)
    indices = np.asarray(quanta_similarity["indices"], dtype=np.int64)
    options = settings.for_model(model)
    k = options.num_clusters
    road = "sparse (kNN graph)" if "knn_indices" in quanta_similarity else "exact (dense matrix)"
    context.log.info(f"spectral clustering of {len(indices):,} tokens into {k} clusters, {road} road "
                     f"(n_init={options.n_init}, random_state={options.random_state})")
    try:
        labels, info = cluster_roads.cluster_similarity(quanta_similarity, options, progress=context.log.info)
    except ValueError as error:
        raise ValueError(f"quanta_similarity of {model} {step}: {error}") from error
    table = clusters_table(indices, labels, CanonicalCorpus.from_arrays(pile_canonical), np.asarray(pile_losses))
    sizes = clustering.cluster_sizes(labels)
    context.add_output_metadata(
        {
            "num_tokens": len(indices),
            "num_clusters": k,
            "n_init": options.n_init,
            "random_state": options.random_state,
            **{name: value for name, value in info.items()
               if name not in ("num_tokens", "num_clusters", "n_init")},
            "clusters_digest": clusters_digest(indices, labels),
            "largest_clusters": dg.MetadataValue.json(sizes[:10].tolist()),
            "median_cluster_size": float(np.median(sizes)),
            "smallest_cluster_size": int(sizes[-1]),
            "singleton_clusters": int((sizes == 1).sum()),
            **_paper_agreement(model, step, labels, k),
        }
    )
    return {"labels": labels, "tokens": table}


def _paper_agreement(model: str, step: str, labels: np.ndarray, k: int) -> dict:
    """ARI / NMI against the paper's published clusters, for the partition the paper clustered
    (pythia-70m-v0, step143000, 10,000 tokens, a k it used; compared position by position, so it
    means something with the default selection, which is the paper's)."""
    if not paper.paper_comparable(model, step, len(labels), k):
        return {}
    agreement = paper.compare_with_paper(labels, k)
    return {"paper_adjusted_rand": round(agreement["adjusted_rand"], 4), "paper_nmi": round(agreement["nmi"], 4)}
