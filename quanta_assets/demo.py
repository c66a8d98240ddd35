"""``make demo``: materialize the whole pipeline for the embedded demo suite, offline.

Runs against the persistent Dagster instance in ``$DAGSTER_HOME`` (so ``make ui`` shows every
materialization, its metadata and lineage) and the cache in ``$QUANTA_CACHE_DIR``.

What is materialized (walking the asset graph in topological order, so e.g. a report that reads
the per-model training dynamics runs after them):

* unpartitioned assets (corpus, filters, demo-suite training) once;
* ``model_checkpoint`` and ``pile_losses`` for every demo step;
* the other model × step assets (similarity, clusters, report) for the last demo step;
* model-partitioned assets (token learning times, training dynamics) for the demo model;
* the default study and the studies of :data:`DEMO_STUDIES` (each its own similarity → clusters →
  dynamics → report, side by side) and their comparison; other studies' assets are skipped with a
  line saying so;
* nothing of the family × step assets (``token_scale_curves``): a fit across model sizes needs a
  family of ≥ 6 sizes, and the demo suite is one model that belongs to no family — they are
  skipped explicitly (:data:`SKIPPED_PARTITIONS`), with a line saying so.

Nothing up to date is recomputed: a partition runs only when it is missing or stale (new code
version / settings, or a dependency with a new data version; :mod:`quanta_assets.staleness`) or
when something upstream of it runs in this same invocation. A second ``make demo`` prints "up to date" lines and runs
nothing. Assets of the same partition that need to run are batched into one run.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from quanta_assets.partitions import checkpoint_key, checkpoint_partitions, family_step_partitions, model_partitions
from quanta_assets.staleness import stale_reason
from quanta_core.environment import env_value
from quanta_core.models.demo_training import DEMO_STEPS
from quanta_core.paths import default_cache_dir, study_key
from quanta_core.presets import DEMO_MODEL

EVERY_STEP = {"model_checkpoint", "pile_losses"}  # the rest of the per-checkpoint graph: last step only
SKIPPED_PARTITIONS = {
    family_step_partitions: "fits across the model sizes of a family (≥ 6 sizes); the demo suite is one model",
}
"""Partitionings the demo materializes nothing of, and why."""
DEMO_STUDIES = ("paper-abs",)
"""Studies the demo materializes besides the default one (the paper's |C| matrix beside C)."""
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
"""Each run's console: the stages' INFO progress lines, without the hundreds of DEBUG events."""


@dataclass
class Run:
    """One run of the plan: asset keys (toposorted) of one partitioning, for one partition."""

    partition: str | None
    keys: list = field(default_factory=list)

    def label(self) -> str:
        return ", ".join(k.to_user_string() for k in self.keys) + (f"  [{self.partition}]" if self.partition else "")


def _other_study(key: dg.AssetKey) -> bool:
    """Is ``key`` an asset of a study the demo does not materialize?"""
    return len(key.path) > 1 and key.path[0] not in {study_key(name) for name in DEMO_STUDIES}


def demo_partitions(graph, key: dg.AssetKey, steps: list[str]) -> list[str | None]:
    """Which partitions of ``key`` the demo materializes (``[None]`` for unpartitioned)."""
    if _other_study(key):
        return []
    pdef = graph.get(key).partitions_def
    if pdef is None:
        return [None]
    if pdef == checkpoint_partitions:
        chosen = steps if key.to_user_string() in EVERY_STEP else steps[-1:]
        return [str(checkpoint_key(DEMO_MODEL, s)) for s in chosen]
    if pdef == model_partitions:
        return [DEMO_MODEL]
    if pdef in SKIPPED_PARTITIONS:
        return []
    raise ValueError(f"demo: {key.to_user_string()} has partitions {pdef} the demo does not know how to choose")


def skipped_assets(graph) -> dict[str, str]:
    """Asset name → why the demo materializes none of its partitions."""
    skipped = {}
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if _other_study(key):
            skipped[key.to_user_string()] = f"a study the demo does not run (it runs {', '.join(DEMO_STUDIES)})"
        elif node.partitions_def in SKIPPED_PARTITIONS:
            skipped[key.to_user_string()] = SKIPPED_PARTITIONS[node.partitions_def]
    return skipped


def _ordered_keys(graph) -> list:
    """Materializable keys in topological order; within a level, unpartitioned assets first."""
    level: dict = {}
    for key in graph.toposorted_asset_keys:
        level[key] = 1 + max((level[p] for p in graph.get(key).parent_keys if p in level), default=-1)
    rank = lambda k: 0 if graph.get(k).partitions_def is None else 1  # noqa: E731
    return sorted((k for k in level if graph.get(k).is_materializable), key=lambda k: (level[k], rank(k)))


def plan_runs(instance, graph, steps: list[str]) -> tuple[list[Run], dict]:
    """(runs to launch in order, {asset: [up-to-date partitions]}).

    A unit (asset, partition) runs when it is missing or stale, or when an upstream unit it reads
    runs too. Units are packed into the earliest run of their partition that comes after every run
    holding one of their upstream units.
    """
    runs: list[Run] = []
    run_of: dict = {}  # (key, partition) → index of the run that holds it
    up_to_date: dict = defaultdict(list)
    for key in _ordered_keys(graph):
        node = graph.get(key)
        for partition in demo_partitions(graph, key, steps):
            upstream = []  # indices of planned runs this unit reads from
            for parent in node.parent_keys:
                same = graph.get(parent).partitions_def == node.partitions_def and partition is not None
                upstream += [i for (k, p), i in run_of.items() if k == parent and (not same or p == partition)]
            if not upstream and stale_reason(instance, graph, key, partition) is None:
                up_to_date[key.to_user_string()].append(partition)
                continue
            after = max(upstream, default=-1)
            index = next((i for i, r in enumerate(runs) if i >= after and r.partition == partition
                          and graph.get(r.keys[0]).partitions_def == node.partitions_def), None)
            if index is None:
                runs.append(Run(partition))
                index = len(runs) - 1
            runs[index].keys.append(key)
            run_of[(key, partition)] = index
    return runs, up_to_date


def _stored_path(instance, key: dg.AssetKey, partition: str) -> str | None:
    """The ``path`` its latest materialization of ``partition`` recorded, else ``None``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    path = records[0].asset_materialization.metadata.get("path") if records else None
    return str(path.value) if path is not None else None


def result_pages(instance, graph, steps: list[str]) -> dict[str, str]:
    """``{"report": …, "model page": …}``: the stored pages of the demo (those that exist)."""
    pages = {}
    if graph.has(dg.AssetKey("quanta_report")) and steps:
        last = str(checkpoint_key(DEMO_MODEL, steps[-1]))
        pages["report"] = _stored_path(instance, dg.AssetKey("quanta_report"), last)
    if graph.has(dg.AssetKey("quanta_study_comparison")) and steps:
        last = str(checkpoint_key(DEMO_MODEL, steps[-1]))
        folder = _stored_path(instance, dg.AssetKey("quanta_study_comparison"), last)
        pages["studies compared"] = str(Path(folder) / "page.html") if folder else None
    if graph.has(dg.AssetKey("quanta_training_dynamics")):
        folder = _stored_path(instance, dg.AssetKey("quanta_training_dynamics"), DEMO_MODEL)
        pages["model page"] = str(Path(folder) / "page.html") if folder else None
    return {name: path for name, path in pages.items() if path and Path(path).is_file()}


def execute(job, run: Run, instance) -> bool:
    """Materialize one run in this process, the console showing INFO and above (the stages' progress
    lines, not Dagster's DEBUG events); ``True`` when it succeeded."""
    return job.get_subset(asset_selection=set(run.keys)).execute_in_process(
        instance=instance, partition_key=run.partition, tags={"quanta/demo": "1"}, run_config=RUN_CONFIG
    ).success


def main() -> None:
    started = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = env_value("DAGSTER_HOME")  # the environment, else the clone's .env (`make install` writes it)
    if not home:
        sys.exit("demo: set DAGSTER_HOME (make demo sets it to .dagster_home and copies dagster.yaml there)")
    os.environ["DAGSTER_HOME"] = home
    from quanta_assets.definitions import defs

    instance = dg.DagsterInstance.get()
    graph = defs.resolve_asset_graph()
    job = defs.resolve_implicit_global_asset_job_def()

    steps = list(DEMO_STEPS)
    runs, up_to_date = plan_runs(instance, graph, steps)
    for name, partitions in up_to_date.items():
        shown = ", ".join(p or "-" for p in partitions[:3]) + (" …" if len(partitions) > 3 else "")
        print(f"✓ up to date: {name} ({len(partitions)} partition{'s' * (len(partitions) != 1)}: {shown})", flush=True)
    for name, why in skipped_assets(graph).items():
        print(f"- skipped: {name} ({why})", flush=True)
    if not runs:
        print("✓ everything is up to date; nothing to run", flush=True)
    for i, run in enumerate(runs, 1):
        print(f"→ [{i}/{len(runs)}] {run.label()}", flush=True)
        t0 = time.perf_counter()
        if not execute(job, run, instance):
            sys.exit(f"demo failed while materializing {run.label()} (see `make ui` → Runs for the log)")
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s ({len(runs)} runs)")
    print(f"cache: {default_cache_dir()}")
    for name, page in result_pages(instance, graph, steps).items():
        print(f"{name}: {page}\n  open it in a browser: file://{os.path.abspath(page)}")
    print("open the Dagster UI on these results: make ui   (then http://127.0.0.1:3000)")


if __name__ == "__main__":
    main()
