"""``quanta_similarity`` (per checkpoint; one per study): the QDG gradient cosine-similarity matrix
of the selected low-loss tokens (quanta_core.corpus.selection + quanta_core.similarity)."""

from pathlib import Path

import dagster as dg

from quanta_assets.automation import follow_upstream
from quanta_assets.code_versions import require_declared_settings
from quanta_assets.compute import ComputeResource
from quanta_assets.compute.executors import GPU_OP_TAGS, GPU_POOL
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.resources import QuantaCache
from quanta_assets.stages.loading import loader_params
from quanta_assets.studies import DEFAULT_STUDY, Study
from quanta_core.paths import asset_path

_AS_PATH = {"as_path": True}


DESCRIPTION = (
        "QDG similarity of the checkpoint: the selected low-loss tokens (loss < threshold in bits, strict, "
        "not flagged by the induction filter, every skip-th, first num_tokens; defaults = the original "
        "README run for Pythia) and the cosine similarity of their per-token loss gradients w.r.t. all "
        "parameters except the input embedding, the unembedding and the per-layer layer norms (the final "
        "layer norm is included, as in the original). Directory `<cache>/<model>/<step>/quanta_similarity/`: "
        "`indices.npy` int64 [S] canonical indices (ascending) and `matrix.npy` float32 [S, S], symmetric, "
        "diagonal 1, rows/columns in the order of indices. With `similarity_settings.neighbors` k > 0 (the "
        "sparse road, for large S) no S × S array is made: `knn_indices.npy` int64 [S, k] (row i: positions "
        "in indices of the k tokens most similar to token i, itself excluded, most similar first, ties by "
        "lower position) and `knn_cosines.npy` float32 [S, k] (their cosines) replace `matrix.npy`."
)


def similarity_asset(study: Study = DEFAULT_STUDY) -> dg.AssetsDefinition:
    """``quanta_similarity`` of ``study`` (its key prefix, its ``similarity_settings``)."""
    settings_key = study.resource_key("similarity_settings")

    @dg.asset(
        name="quanta_similarity",
        key_prefix=study.key_prefix,
        partitions_def=checkpoint_partitions,
        deps=["model_checkpoint"],
        ins={name: dg.AssetIn(key=name, metadata=_AS_PATH)
             for name in ("pile_canonical", "pile_losses", "induction_filters")},
        required_resource_keys={settings_key, "models", "cache", "compute"},
        group_name=study.group("similarity"),
        code_version="1",
        pool=GPU_POOL,
        op_tags=GPU_OP_TAGS,
        automation_condition=follow_upstream(),
        description=DESCRIPTION + study.note(),
    )
    def quanta_similarity(
        context: dg.AssetExecutionContext,
        pile_canonical: Path,
        pile_losses: Path,
        induction_filters: Path,
    ) -> dg.MaterializeResult:
        require_declared_settings(context)
        model, step = model_and_step(context)
        cache: QuantaCache = context.resources.cache
        selection, options = getattr(context.resources, settings_key).for_model(model)
        params = {
            "cache_dir": str(cache.path),
            "model": model,
            "step": step,
            "corpus": str(pile_canonical),
            "losses": str(pile_losses),
            "filters": str(induction_filters),
            "output": str(asset_path(cache.path, study.asset_key("quanta_similarity"), model, step)),
            "selection": selection.as_dict(),
            "similarity": options.as_dict(),
            "loader": loader_params(context.resources.models),
        }
        compute: ComputeResource = context.resources.compute
        return compute.run(context, "quanta_similarity", params, model)

    return quanta_similarity


quanta_similarity = similarity_asset()
