"""Central wiring applied to every asset in ``definitions.py``: settings-aware code versions, the
GPU pool, and the declarative automation conditions.

**Settings in lineage.** Analysis settings live in the stage settings resources (``RESOURCES`` of
each asset module). The *effective* code version of an asset is

    ``<code_version written in the module>+s<8 hex digits>``

where the hex digits hash the settings of the resources the asset requires (field values, with
``dg.EnvVar`` fields resolved, plus ``$QUANTA_PILE`` for the corpus). Changing a setting — in code
or through the environment — changes the code version of exactly the assets that use that
resource; Dagster then marks their materialized partitions stale ("has a new code version"),
nothing else. Once such a partition is re-materialized its data version changes, and then (only
then: Dagster 1.13 does not propagate "stale" ahead of the data) the partitions downstream of it
turn stale ("has a new dependency data version"). Assets that use no settings
resource keep their written code version. Storage locations (the ``cache`` and ``io_manager``
resources) and fields that choose *where/how fast* to compute rather than *what* (``EXECUTION_FIELDS``)
are not part of the hash.

Why this design: Dagster's staleness machinery already compares code versions and upstream data
versions per partition, shows the result in the UI and in ``CachingStaleStatusResolver``; folding
the settings into the code version reuses it unchanged. Run config (``Config`` classes) would not
work: it is chosen per run and never visible to the staleness check.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

GPU_POOL = "gpu"
GPU_ASSETS = frozenset({"quanta_demo_suite", "pile_losses", "quanta_similarity"})
"""Assets whose op runs in the ``gpu`` pool (one run at a time by default, see dagster.yaml)."""

FOLLOWERS = frozenset({"induction_filters", "quanta_similarity", "quanta_clusters", "quanta_report",
                       "quanta_training_dynamics"})
"""Assets that follow their upstream by declarative automation (when the sensor is on)."""

NOT_SETTINGS_RESOURCES = frozenset({"io_manager", "cache"})
EXECUTION_FIELDS = frozenset({
    "device", "offline", "hub_cache_dir", "cache_dir", "hf_home", "num_threads",  # where / how to load
    "batch_tokens", "logits_chunk", "gradient_batch_size", "batch_size", "max_batch_tokens",  # speed/memory only
    "memory_budget_gib",
    "progress_seconds", "log_every",
})
"""Resource fields that choose where/how fast to compute, not what: left out of the settings hash."""

SETTINGS_SEPARATOR = "+s"


def _plain(value: Any) -> Any:
    if isinstance(value, dg.EnvVar):
        return value.get_value()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def resource_settings(resource: Any) -> dict:
    """The settings of one resource that decide *what* is computed (a JSON-able dict)."""
    from quanta_assets.resources import PileSource

    if not isinstance(resource, dg.ConfigurableResource):
        return {"type": type(resource).__name__}
    fields = {k: v for k, v in resource.model_dump().items() if k not in EXECUTION_FIELDS}
    # model_dump() keeps EnvVar objects as their names; read the values
    fields = {k: _plain(getattr(resource, k, v)) for k, v in fields.items()}
    if isinstance(resource, PileSource):  # the corpus path may come from the environment
        fields["pile_path"] = resource.configured_path
    fields["type"] = type(resource).__name__
    return fields


def settings_digest(resource_keys: Iterable[str], resources: Mapping[str, Any]) -> str | None:
    """8 hex digits over the settings of ``resource_keys`` (``None`` when none are settings)."""
    keys = sorted(k for k in resource_keys if k not in NOT_SETTINGS_RESOURCES and k in resources)
    if not keys:
        return None
    blob = json.dumps({k: resource_settings(resources[k]) for k in keys}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def base_code_version(code_version: str | None) -> str | None:
    """The code version as written in the module (without the settings suffix)."""
    return None if code_version is None else code_version.split(SETTINGS_SEPARATOR)[0]


def with_settings_code_version(assets_def: dg.AssetsDefinition, resources: Mapping[str, Any]) -> dg.AssetsDefinition:
    digest = settings_digest(assets_def.required_resource_keys, resources)
    if digest is None:
        return assets_def

    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.code_version is None:
            return spec  # reported by missing_lineage(); nothing to extend
        return spec.replace_attributes(code_version=f"{base_code_version(spec.code_version)}{SETTINGS_SEPARATOR}{digest}")

    return assets_def.map_asset_specs(replace)


def with_pool(assets_def: dg.AssetsDefinition, pool: str) -> dg.AssetsDefinition:
    """The same asset with its op in ``pool`` (Dagster has no public setter for an existing op)."""
    op = assets_def.node_def
    if not isinstance(op, dg.OpDefinition) or op.pool == pool:
        return assets_def
    new_op = dg.OpDefinition.dagster_internal_init(
        name=op.name,
        ins={d.name: dg.In.from_definition(d) for d in op.input_defs},
        outs={d.name: dg.Out.from_definition(d) for d in op.output_defs},
        compute_fn=op.compute_fn,
        config_schema=op.config_schema,
        description=op.description,
        tags={k: v for k, v in op.tags.items() if k != "dagster/concurrency_key"},
        required_resource_keys=op.required_resource_keys,
        code_version=op._version,  # noqa: SLF001 (what with_replaced_properties copies)
        retry_policy=op.retry_policy,
        version=None,
        pool=pool,
    )
    return assets_def.__class__.dagster_internal_init(**{**assets_def.get_attributes_dict(), "node_def": new_op})


def follow_upstream() -> dg.AutomationCondition:
    """Like ``AutomationCondition.eager()``, but a dependency only counts as updated when its
    *data version* changed: re-materializing an upstream partition that produces the same data
    (same code, settings and inputs) does not re-run anything downstream.

    Requests a partition when it newly became missing or a dependency's data version changed
    since it was last requested/updated, no dependency is missing or in progress, and every
    blocking asset check of the dependencies passed (a wrong upstream result does not propagate).
    """
    cond = dg.AutomationCondition
    return (
        (cond.newly_missing() | cond.any_deps_match(cond.data_version_changed())).since_last_handled()
        & ~cond.any_deps_missing()
        & ~cond.any_deps_in_progress()
        & cond.all_deps_blocking_checks_passed()
        & ~cond.in_progress()
    ).with_label("follow upstream data")


def follow_upstream_aggregate() -> dg.AutomationCondition:
    """For assets that aggregate many upstream partitions (``quanta_training_dynamics``: every step
    of a model): like ``follow_upstream()``, but instead of "no dependency partition missing"
    (never true while a campaign covers only some steps) it needs every dependency to have at
    least one materialized partition; it waits until no dependency partition is in progress, so
    a campaign's stream of new checkpoints triggers one run, not one per checkpoint."""
    cond = dg.AutomationCondition
    return (
        (cond.newly_missing() | cond.any_deps_match(cond.data_version_changed())).since_last_handled()
        & cond.all_deps_match(~cond.missing())
        & ~cond.any_deps_in_progress()
        & cond.all_deps_blocking_checks_passed()
        & ~cond.in_progress()
    ).with_label("follow upstream data (aggregate)")


def _aggregates(assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> bool:
    """Does ``key`` read many partitions of some dependency per partition of its own (e.g. one
    model's partition reads every step of a model × step asset)?"""
    own = assets_def.specs_by_key[key].partitions_def
    for dep in assets_def.specs_by_key[key].deps:
        if isinstance(dep.partition_mapping, dg.AllPartitionMapping):
            return True
        if isinstance(dep.partition_mapping, dg.MultiToSingleDimensionPartitionMapping) and not isinstance(
            own, dg.MultiPartitionsDefinition
        ):
            return True
    return False


def automation_condition_for(assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> dg.AutomationCondition:
    return follow_upstream_aggregate() if _aggregates(assets_def, key) else follow_upstream()


def wire_assets(assets_defs: Iterable, resources: Mapping[str, Any]) -> list:
    """Apply pool, automation condition and settings code version to every asset definition."""
    out = []
    for assets_def in assets_defs:
        if not isinstance(assets_def, dg.AssetsDefinition) or not assets_def.is_executable:
            out.append(assets_def)
            continue
        names = {k.to_user_string() for k in assets_def.keys}
        if names & GPU_ASSETS:
            assets_def = with_pool(assets_def, GPU_POOL)
        followers = {k for k in assets_def.keys if k.to_user_string() in FOLLOWERS}
        if followers:
            assets_def = assets_def.map_asset_specs(
                lambda s: s.replace_attributes(automation_condition=automation_condition_for(assets_def, s.key))
                if s.key in followers else s
            )
        out.append(with_settings_code_version(assets_def, resources))
    return out


def missing_lineage(defs: dg.Definitions) -> list[str]:
    """Lines naming every asset without a description or code version."""
    problems = []
    graph = defs.resolve_asset_graph()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        if not (node.description or "").strip():
            problems.append(f"{key.to_user_string()}: no description")
        if not node.code_version:
            problems.append(f"{key.to_user_string()}: no code_version")
    return problems

