"""``pile_losses`` (per checkpoint: the model's loss on every predictable token of the first N
documents) and ``induction_filters`` (once: present-trigram / present-bigram flags)."""

import time
from pathlib import Path

import dagster as dg

from quanta_assets.automation import follow_upstream
from quanta_assets.compute import ComputeResource
from quanta_assets.compute.executors import GPU_OP_TAGS, GPU_POOL
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.resources import ModelLoader, QuantaCache
from quanta_assets.settings import LossSettings
from quanta_assets.stages.loading import loader_params
from quanta_core.corpus.canonical import CanonicalCorpus
from quanta_core.corpus.filters import induction_filters as compute_induction_filters
from quanta_core.paths import asset_path
from quanta_core.presets import preset_for
from quanta_core.progress import RateLog


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
    num_documents = loss_settings.documents_for(model, corpus.num_documents)
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


@dg.asset(
    group_name="losses",
    code_version="1",
    automation_condition=follow_upstream(),
    description=(
        "Induction filters: per predictable token of the whole pile_canonical, whether plain copying "
        "could predict it (the original's evaluate_pile_present_*_filter.py). `present_trigram` (the "
        "paper's filter): token i ≥ 2 of a document whose trigram (t[i−2], t[i−1], t[i]) already "
        "occurred earlier in the same document; `present_bigram`: same with (t[i−1], t[i]). The first "
        "predictable token of a document is never flagged. Directory "
        "`<cache>/corpus/induction_filters/`: `present_trigram.npy`, `present_bigram.npy`, bool [G] "
        "over the canonical index; their first entries line up with any pile_losses table."
    ),
)
def induction_filters(context: dg.AssetExecutionContext, pile_canonical: dict) -> dict:
    corpus = CanonicalCorpus.from_arrays(pile_canonical)
    total = len(corpus.ids)
    context.log.info(f"induction filters over {total:,} tokens, {corpus.num_documents:,} documents")
    started = time.perf_counter()
    flags = compute_induction_filters(corpus, progress=RateLog(context.log.info, total, "tokens of the current pass"))
    seconds = time.perf_counter() - started
    share = {name: float(flags[name].mean()) if corpus.num_predictable else 0.0 for name in flags}
    context.add_output_metadata(
        {
            "num_tokens": corpus.num_predictable,
            "num_documents": corpus.num_documents,
            "fraction_present_trigram": share["present_trigram"],
            "fraction_present_bigram": share["present_bigram"],
            "seconds": round(seconds, 2),
            "tokens_per_second": round(total / max(seconds, 1e-9)),
        }
    )
    return flags
