"""``pile_losses`` (per checkpoint): the model's loss on every predictable token of the first N documents."""

from pathlib import Path

import dagster as dg

from quanta_assets.compute import ComputeResource
from quanta_assets.compute.executors import GPU_OP_TAGS, GPU_POOL
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.resources import ModelLoader, QuantaCache
from quanta_assets.settings import LossSettings
from quanta_assets.stages.loading import loader_params
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.paths import asset_path
from quanta_core.presets import preset_for


@dg.asset(
    partitions_def=checkpoint_partitions,
    deps=["model_checkpoint"],
    ins={"pile_canonical": dg.AssetIn(metadata={"as_path": True})},
    group_name="losses",
    code_version="2",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    description=(
        "The checkpoint's cross-entropy loss, in nats, on every predictable token of the first N "
        "documents of pile_canonical (N = 20,000 for Pythia as in the original; the first 400 "
        "mini-Pile documents for the demo suite). File `<cache>/<model>/<step>/pile_losses.npy`: float32 [G], G = "
        "predictable tokens of those documents, aligned to the canonical index (entry g is the loss "
        "of predicting token pos of document doc from the tokens before it, see "
        "quanta_core.corpus.canonical). Since the canonical index is a prefix, induction_filters[:G] lines "
        "up with it."
    ),
)
def pile_losses(
    context: dg.AssetExecutionContext,
    pile_canonical: Path,
    models: ModelLoader,
    cache: QuantaCache,
    loss_settings: LossSettings,
    compute: ComputeResource,
) -> dg.MaterializeResult:
    model, step = model_and_step(context)
    corpus = CanonicalCorpus.load(pile_canonical)
    num_documents = loss_settings.for_model(model, corpus.num_documents)
    wanted = preset_for(model).loss_documents
    if loss_settings.num_documents is None and num_documents < wanted:
        context.log.warning(f"pile_canonical has only {corpus.num_documents} documents: evaluating all of them "
                            f"instead of the {wanted:,} of the {preset_for(model).name} preset")
    params = {
        "cache_dir": str(cache.path),
        "model": model,
        "step": step,
        "corpus": str(pile_canonical),
        "output": str(asset_path(cache.path, "pile_losses", model, step)),
        "num_documents": num_documents,
        "num_documents_setting": loss_settings.num_documents,
        "batch_tokens": loss_settings.batch_tokens,
        "logits_chunk": loss_settings.logits_chunk,
        "loader": loader_params(models),
    }
    return compute.run(context, "pile_losses", params, model)
