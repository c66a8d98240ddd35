"""Settings in lineage: an asset's code version carries a hash of the settings it uses.

The effective code version is ``<code_version written on the asset>+s<8 hex digits>``, the digits
hashing the :meth:`~quanta_assets.settings.SettingsResource.fingerprint` of every settings
resource the asset requires (environment variables read). Changing a setting — in code or through
the environment — changes the code version of exactly the assets that use it; Dagster marks their
materialized partitions stale ("has a new code version"), and once they are re-materialized
their new data versions make the partitions downstream stale in turn. Resources that are not
:class:`~quanta_assets.settings.SettingsResource` (the cache, the IO manager, the compute backend)
and each resource's ``execution_fields`` do not count.

Why: Dagster's staleness already compares code versions and upstream data versions per
partition and shows the result in the UI; folding the settings into the code version reuses it
unchanged. Run config would not work: it is chosen per run and invisible to staleness.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from quanta_assets.settings import SettingsResource

SETTINGS_SEPARATOR = "+s"


def settings_digest(resource_keys: Iterable[str], resources: Mapping[str, Any]) -> str | None:
    """8 hex digits over the fingerprints of the settings resources among ``resource_keys``
    (``None`` when there are none)."""
    keys = sorted(k for k in resource_keys if isinstance(resources.get(k), SettingsResource))
    if not keys:
        return None
    blob = json.dumps({k: resources[k].fingerprint() for k in keys}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def base_code_version(code_version: str | None) -> str | None:
    """The code version as written on the asset (without the settings suffix)."""
    return None if code_version is None else code_version.split(SETTINGS_SEPARATOR)[0]


def with_settings_code_version(assets_def, resources: Mapping[str, Any]):
    """``assets_def`` with each spec's code version extended by its settings digest."""
    if not isinstance(assets_def, dg.AssetsDefinition) or not assets_def.is_executable:
        return assets_def
    digest = settings_digest(assets_def.required_resource_keys, resources)
    if digest is None:
        return assets_def

    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.code_version is None:
            return spec  # reported by missing_lineage(); nothing to extend
        written = base_code_version(spec.code_version)
        return spec.replace_attributes(code_version=f"{written}{SETTINGS_SEPARATOR}{digest}")

    return assets_def.map_asset_specs(replace)


def missing_lineage(defs: dg.Definitions) -> list[str]:
    """Lines naming every materializable asset without a description or code version."""
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
