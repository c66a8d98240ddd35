"""Is a materialized partition up to date? Read from the instance's materialization records
(public API), for ``make demo``'s "skip what is up to date".

A partition is up to date when it has a materialization whose recorded code version
(``dagster/code_version``, which carries the settings hash) is the asset's current one, and no
dependency changed since: for a dependency partition it reads, the materialization it read
(``dagster/input_event_pointer/<dep>``) is still the latest or has the same data version
(``dagster/data_version``); for a dependency that spans many partitions (every step of a
model), none of them was materialized after it. That is Dagster's own notion of stale ("new
code version", "new dependency data version"), except that a newer materialization of a
many-partition dependency counts as a change even when its data version is the same (stricter:
it can only re-run more). ``tests/assets/test_orchestration.py`` compares it with Dagster's resolver
(``test_changing_a_setting_marks_exactly_the_affected_partitions_stale``).
"""

from __future__ import annotations

import dagster as dg

from quanta_assets.io_manager import partition_parts
from quanta_assets.partitions import checkpoint_partitions, model_partitions

CODE_VERSION_TAG = "dagster/code_version"
DATA_VERSION_TAG = "dagster/data_version"
INPUT_POINTER_TAG = "dagster/input_event_pointer/"


def latest_record(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None = None, **filters):
    """The latest materialization record of ``key`` (at ``partition``), or ``None``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=None if partition is None else [partition], **filters),
        limit=1,
    ).records
    return records[0] if records else None


EVERY_STEP = "every step of the model"


def parent_partition(graph, child: dg.AssetKey, parent: dg.AssetKey, partition: str | None) -> str | None:
    """The partition of ``parent`` that ``child`` at ``partition`` reads (``None``: unpartitioned),
    or :data:`EVERY_STEP` when a model partition reads every model × step partition of its model."""
    mine, theirs = graph.get(child).partitions_def, graph.get(parent).partitions_def
    if theirs is None:
        return None
    if theirs == mine:
        return partition
    if theirs == model_partitions:
        return partition_parts(partition)[0]
    if theirs == checkpoint_partitions and mine == model_partitions:
        return EVERY_STEP
    raise ValueError(f"{child.to_user_string()} → {parent.to_user_string()}: "
                     "a partition layout the planner does not know")


def _newer_step(instance, parent: dg.AssetKey, model: str, after: int) -> bool:
    """Has some ``model|<step>`` partition of ``parent`` been materialized after storage id ``after``?"""
    newer = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=parent, after_storage_id=after),
                                            limit=10_000).records
    return any(partition_parts(r.asset_materialization.partition)[0] == model for r in newer)


def _parent_changed(instance, graph, record, child: dg.AssetKey, parent: dg.AssetKey, partition) -> str | None:
    name = parent.to_user_string()
    upstream = parent_partition(graph, child, parent, partition)
    if upstream == EVERY_STEP:
        return f"{name} has newer partitions" if _newer_step(instance, parent, partition, record.storage_id) else None
    current = latest_record(instance, parent, upstream)
    pointer = (record.asset_materialization.tags or {}).get(INPUT_POINTER_TAG + name)
    if current is None or pointer is None:
        return f"{name} is missing"
    if int(pointer) == current.storage_id:
        return None
    used = latest_record(instance, parent, upstream, storage_ids=[int(pointer)])
    version = (current.asset_materialization.tags or {}).get(DATA_VERSION_TAG)
    if used is None or (used.asset_materialization.tags or {}).get(DATA_VERSION_TAG) != version:
        return f"{name} has a new data version"
    return None


def stale_reason(instance: dg.DagsterInstance, graph, key: dg.AssetKey, partition: str | None) -> str | None:
    """Why ``key`` at ``partition`` needs materializing (``"missing"``, ``"new code version"``,
    ``"<dep> has a new data version"`` …), or ``None`` when it is up to date."""
    record = latest_record(instance, key, partition)
    if record is None:
        return "missing"
    if (record.asset_materialization.tags or {}).get(CODE_VERSION_TAG) != graph.get(key).code_version:
        return "new code version"
    for parent in sorted(graph.get(key).parent_keys):
        reason = _parent_changed(instance, graph, record, key, parent, partition)
        if reason:
            return reason
    return None
