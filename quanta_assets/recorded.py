"""What the latest materialization of an asset partition recorded about its file, and the check that
the stored file still matches it before anything computes on it (used by the IO manager on load).

Every materialization records ``content_size`` (bytes) and ``content_hash`` of what it wrote
(:func:`quanta_core.integrity.fingerprint`): the IO manager adds them for the values it stores, and
``quanta_assets.compute.stage_ref.run_stage`` for the stages' ``output``. A materialization without
them (recorded before they existed) is not checked.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from quanta_core.integrity import CacheFileError, mismatch


def recorded_fingerprint(instance: dg.DagsterInstance, asset_key: dg.AssetKey,
                         partition: str | None) -> tuple[dict, str] | None:
    """``({"size", "hash"}, run id)`` of the latest materialization of the asset (partition), or
    ``None`` when there is none or it recorded no fingerprint."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition] if partition else None), limit=1
    ).records
    if not records:
        return None
    metadata = records[0].asset_materialization.metadata
    if "content_size" not in metadata or "content_hash" not in metadata:
        return None
    return {"size": metadata["content_size"].value, "hash": metadata["content_hash"].value}, records[0].run_id


def verify_stored(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None, stored: Path) -> None:
    """Raise :class:`CacheFileError` naming ``stored`` if it no longer matches what its latest
    materialization recorded."""
    found = recorded_fingerprint(instance, asset_key, partition)
    if found is None:
        return
    recorded, run_id = found
    problem = mismatch(stored, recorded)
    if problem:
        where = f" partition {partition}" if partition else ""
        raise CacheFileError(f"{asset_key.to_user_string()}{where}: {problem} (materialized by run {run_id}); "
                             "rematerialize it")
