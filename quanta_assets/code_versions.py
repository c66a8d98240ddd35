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
unchanged, and Dagster's data version of a result (code version + input data versions) then
reflects every setting that made it.

Run config cannot change what is computed: a run whose run config (launchpad, ``--config-json``,
a schedule) sets a field that shapes results to something other than the definitions' value
fails before any work (:func:`require_declared_settings`), naming the field and where settings
are declared instead (a study file, ``studies/*.yaml``). Otherwise a result made with other
settings would carry the definitions' code version and overwrite the definitions' result on
disk. Execution-only fields (``execution_fields``: device, batch sizes, memory budgets, threads)
stay free. The declared fingerprints are on each asset as definition metadata
(``quanta/settings``), so the UI shows every setting of an asset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import dagster as dg

from quanta_assets.settings import SettingsResource

SETTINGS_SEPARATOR = "+s"
SETTINGS_METADATA = "quanta/settings"


def declared_fingerprints(resource_keys: Iterable[str], resources: Mapping[str, Any]) -> dict[str, dict]:
    """``{resource key: fingerprint}`` of the settings resources among ``resource_keys``, JSON-normal."""
    keys = sorted(k for k in resource_keys if isinstance(resources.get(k), SettingsResource))
    return json.loads(json.dumps({k: resources[k].fingerprint() for k in keys}, sort_keys=True, default=repr))


def settings_digest(resource_keys: Iterable[str], resources: Mapping[str, Any]) -> str | None:
    """8 hex digits over the fingerprints of the settings resources among ``resource_keys``
    (``None`` when there are none)."""
    fingerprints = declared_fingerprints(resource_keys, resources)
    if not fingerprints:
        return None
    blob = json.dumps(fingerprints, sort_keys=True, default=repr)
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
    declared = dg.MetadataValue.json(declared_fingerprints(assets_def.required_resource_keys, resources))

    def replace(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.code_version is None:
            return spec  # reported by missing_lineage(); nothing to extend
        written = base_code_version(spec.code_version)
        return spec.replace_attributes(code_version=f"{written}{SETTINGS_SEPARATOR}{digest}",
                                       metadata={**spec.metadata, SETTINGS_METADATA: declared})

    return assets_def.map_asset_specs(replace)


class UndeclaredSettingsError(dg.Failure):
    """Run config changed a field that shapes results."""


def require_declared_settings(context: dg.AssetExecutionContext) -> None:
    """Fail before any work when the run's settings differ from the definitions' in a field that
    shapes results (e.g. ``num_clusters`` set in the launchpad). A no-op for an asset built
    without :func:`with_settings_code_version` (no declared settings to compare with)."""
    spec = context.assets_def.specs_by_key[next(iter(context.assets_def.keys))]
    declared = spec.metadata.get(SETTINGS_METADATA)
    if declared is None:
        return
    declared = declared.value
    running = declared_fingerprints(declared, {k: getattr(context.resources, k) for k in declared})
    changed = [f"{key}.{name}: {declared[key].get(name)!r} in the definitions, {value!r} in this run"
               for key, fields in running.items() for name, value in fields.items()
               if declared[key].get(name) != value]
    if changed:
        raise UndeclaredSettingsError(description=(
            "Run config cannot change settings that shape results (the result would carry the definitions' "
            "lineage and overwrite their files): " + "; ".join(changed) + ". Declare other settings as a study "
            "(a YAML file in studies/ or $QUANTA_STUDIES; README 'How settings are given'), or change them in "
            "quanta_assets/definitions.py. Execution-only fields (devices, batch sizes, memory budgets, threads) "
            "may be set in run config."))


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
