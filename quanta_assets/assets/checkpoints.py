"""Checkpoints: ``quanta_demo_suite`` (train the embedded demo model) and ``model_checkpoint``
(resolve/download one model × step revision; its data version is the commit hash)."""

import dataclasses
import time
from pathlib import Path
from typing import Optional

import dagster as dg

from quanta_assets.compute import ComputeResource
from quanta_assets.compute.executors import GPU_OP_TAGS, GPU_POOL
from quanta_assets.partitions import checkpoint_partitions, model_and_step
from quanta_assets.resources import ModelLoader, QuantaCache
from quanta_core.models.checkpoints import check_gptneox_config
from quanta_core.models.demo_suite import DemoSuiteConfig
from quanta_core.paths import asset_path
from quanta_core.presets import DEMO_MODEL


class DemoSuiteTraining(dg.Config):
    """Run config of ``quanta_demo_suite``. ``seed``: training seed; ``retrain``: train even when
    a suite with the same settings (seed, corpus, model size, schedule) is already there. The
    other fields override :class:`quanta_core.models.demo_suite.DemoSuiteConfig` (``None``: the demo's
    default; ``make demo`` analyses the steps of ``DEMO_STEPS``)."""

    seed: int = 0
    retrain: bool = False
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    num_heads: Optional[int] = None
    steps: Optional[list[str]] = None
    batch_tokens: Optional[int] = None
    learning_rate: Optional[float] = None

    def suite_config(self) -> DemoSuiteConfig:
        overrides = {
            name: getattr(self, name)
            for name in ("hidden_size", "num_layers", "num_heads", "batch_tokens", "learning_rate")
            if getattr(self, name) is not None
        }
        if self.steps is not None:
            overrides["steps"] = tuple(self.steps)
        return dataclasses.replace(DemoSuiteConfig(), **overrides)


@dg.asset(
    group_name="checkpoints",
    code_version="1",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    ins={"pile_canonical": dg.AssetIn(metadata={"as_path": True})},
    description=(
        "The embedded demo suite: a small GPT-NeoX (Pythia's architecture — tokenizer, padded vocabulary "
        "50,304, rotary 25%, parallel residual — at hidden size 64, 4 layers) trained by the project on "
        "`pile_canonical` (the mini-Pile), deterministically seeded, with a checkpoint at each of Pythia's "
        "step names step0, step1, step2, step4 … step512 (one optimizer step each). The checkpoints are written "
        "into a local repository in the Hugging Face hub's own layout, "
        "`<cache>/hub/models--quanta--quanta-demo/` (`refs/<step>` → `snapshots/<commit>/` with `config.json`, "
        "`model.safetensors`, `tokenizer.json`), and are loaded through exactly the same code as Pythia (model "
        "name `quanta-demo`). Stored value: `<cache>/corpus/quanta_demo_suite/summary.json` (commits per step, "
        "loss per step on a fixed sample of every 40th document, step-0 and final mean loss in nats, fraction "
        "of tokens under 0.1 nats and under 1 bit on every 8th document, how many of those are not "
        "flagged by the present-trigram filter, timings, settings). Skips training when a suite with the same "
        "settings and corpus is already there (run config `retrain: true` forces it)."
    ),
)
def quanta_demo_suite(
    context: dg.AssetExecutionContext, config: DemoSuiteTraining, cache: QuantaCache, compute: ComputeResource,
    pile_canonical: Path,
) -> dg.MaterializeResult:
    params = {
        "cache_dir": str(cache.path),
        "corpus": str(pile_canonical),
        "output": str(asset_path(cache.path, "quanta_demo_suite")),
        "config": dataclasses.asdict(config.suite_config()),
        "seed": config.seed,
        "retrain": config.retrain,
    }
    return compute.run(context, "quanta_demo_suite", params, DEMO_MODEL)


def _weights_metadata(snapshot: Path) -> dict:
    """File sizes and the parameter count (from the safetensors headers, no tensor loaded)."""
    from safetensors import safe_open

    files = {p.name: p.stat().st_size for p in sorted(snapshot.iterdir()) if p.is_file()}
    parameters = 0
    for name in files:
        if name.endswith(".safetensors"):
            with safe_open(snapshot / name, framework="pt") as f:
                parameters += sum(_numel(f.get_slice(key).get_shape()) for key in f.keys())  # noqa: SIM118 (safe_open has no __iter__)
    meta = {"files": dg.MetadataValue.json(files), "size_mb": round(sum(files.values()) / 2**20, 2)}
    if parameters:
        meta["parameters"] = parameters
    return meta


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


@dg.asset(
    group_name="checkpoints",
    code_version="1",
    partitions_def=checkpoint_partitions,
    deps=[quanta_demo_suite],
    description=(
        "One model checkpoint, model × step: the Hugging Face repository `EleutherAI/<model>` at revision `<step>` "
        "(e.g. pythia-70m at step143000), or the embedded demo suite `quanta-demo` (repository "
        "`quanta/quanta-demo` in `<cache>/hub`). Resolves the revision in the hub cache (HF_HUB_CACHE / HF_HOME), "
        "downloading config, safetensors weights and tokenizer when it is missing and the network is allowed "
        "(HF_HUB_OFFLINE=1 forbids it), and checks the config is a GPT-NeoX causal LM. The DATA VERSION is the "
        "revision's commit hash, so lineage shows exactly which weights every downstream result came from. "
        "Stored value: `<cache>/<model>/<step>/model_checkpoint/checkpoint.json` with repo_id, revision, commit, "
        "snapshot_dir (the weights stay in the hub cache, in Hugging Face format). The dependency on "
        "`quanta_demo_suite` orders training before the demo model's checkpoints; Pythia partitions do not use it."
    ),
)
def model_checkpoint(context: dg.AssetExecutionContext, models: ModelLoader, cache: QuantaCache) -> dg.Output:
    model_name, step = model_and_step(context)
    hub_dir = models.hub_dir(model_name, cache.path)
    context.log.info(f"resolving {model_name}@{step} in {hub_dir}")
    started = time.perf_counter()
    repo_id, commit, snapshot = models.resolve(model_name, step, cache.path)
    config = check_gptneox_config(snapshot, model_name, step)
    record = {"repo_id": repo_id, "revision": step, "commit": commit, "snapshot_dir": str(snapshot),
              "model": model_name}
    metadata = {
        "repo_id": repo_id,
        "revision": step,
        "commit": commit,
        "snapshot_dir": dg.MetadataValue.path(str(snapshot)),
        "hub_cache": dg.MetadataValue.path(str(hub_dir)),
        "demo_suite": model_name == DEMO_MODEL,
        **{key: config.get(key) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")},
        "seconds": round(time.perf_counter() - started, 2),
        "loader_settings": dg.MetadataValue.json(models.model_dump()),
        **_weights_metadata(snapshot),
    }
    context.log.info(f"{model_name}@{step} → {repo_id} commit {commit}")
    return dg.Output({"checkpoint": record}, data_version=dg.DataVersion(commit), metadata=metadata)
