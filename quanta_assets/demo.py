"""``make demo``: materialize the whole pipeline for the embedded demo suite, offline.

Runs against the persistent Dagster instance in ``$DAGSTER_HOME`` (so ``make ui`` shows every
materialization, its metadata and lineage) and the cache in ``$QUANTA_CACHE_DIR``.

Order: unpartitioned assets (corpus, filters, demo-suite training) → per-checkpoint assets that
run for every demo step (checkpoints, losses) → per-checkpoint analysis assets for the last
step (similarity, clusters, report) → per-model assets.
"""

import os
import time

import dagster as dg

from quanta_assets.definitions import defs
from quanta_assets.partitions import DEMO_MODEL, checkpoint_partitions, checkpoint_key, model_partitions

EVERY_STEP = {"model_checkpoint", "pile_losses"}  # the rest of the per-checkpoint graph: last step only


def demo_steps() -> list[str]:
    try:
        from quanta_core.demo_suite import DEMO_STEPS
    except ImportError:
        return []
    return list(DEMO_STEPS)


def _keys_by_partitioning() -> tuple[list, list, list, list]:
    graph = defs.resolve_asset_graph()
    unpartitioned, every_step, last_step, per_model = [], [], [], []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        pdef = node.partitions_def
        if pdef is None:
            unpartitioned.append(key)
        elif pdef == checkpoint_partitions:
            (every_step if key.to_user_string() in EVERY_STEP else last_step).append(key)
        elif pdef == model_partitions:
            per_model.append(key)
    return unpartitioned, every_step, last_step, per_model


def _materialize(instance, keys, partition_key=None) -> None:
    if not keys:
        return
    label = ", ".join(k.to_user_string() for k in keys)
    print(f"→ {label}" + (f"  [{partition_key}]" if partition_key else ""), flush=True)
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(keys))
    result = job.execute_in_process(instance=instance, partition_key=partition_key)
    if not result.success:
        raise SystemExit(f"demo failed while materializing {label}")


def main() -> None:
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    instance = dg.DagsterInstance.get()
    unpartitioned, every_step, last_step, per_model = _keys_by_partitioning()
    steps = demo_steps()
    _materialize(instance, unpartitioned)
    for step in steps:
        _materialize(instance, every_step, checkpoint_key(DEMO_MODEL, step))
    if steps:
        _materialize(instance, last_step, checkpoint_key(DEMO_MODEL, steps[-1]))
    _materialize(instance, per_model, DEMO_MODEL)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s")
    print(f"cache: {os.environ.get('QUANTA_CACHE_DIR')}")
    print("open the UI on these results: make ui   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    main()
