"""The Dagster code location: every asset and check of ``quanta_assets.assets``, the resources,
the campaign schedules and the automation sensor. Load with ``dagster dev -w workspace.yaml``.

Asset modules may declare ``RESOURCES = {key: resource}`` (settings they need); they are merged
here, so adding a stage means adding one module. Then, centrally (``quanta_assets.lineage``):

* each asset's code version becomes ``<written code_version>+s<hash of its settings resources>``,
  so changing a setting marks exactly the affected assets' partitions (and their downstream) stale;
* the GPU-heavy assets run in the Dagster pool ``gpu`` (limit in ``dagster.yaml``);
* the analysis assets get the automation condition ``follow_upstream()``.
"""

import importlib
import importlib.util
import pkgutil

import dagster as dg

from quanta_assets import assets as assets_package
from quanta_assets.io_manager import QuantaIOManagerFactory
from quanta_assets.lineage import wire_assets
from quanta_assets.resources import PileSource, QuantaCache


def _asset_modules() -> list:
    return [
        importlib.import_module(f"{assets_package.__name__}.{info.name}")
        for info in pkgutil.iter_modules(assets_package.__path__)
    ]


def _resources() -> dict:
    resources = {"io_manager": QuantaIOManagerFactory(), "pile": PileSource(), "cache": QuantaCache()}
    for module in _asset_modules():
        for key, resource in getattr(module, "RESOURCES", {}).items():
            if key in resources and type(resources[key]) is not type(resource):
                raise ValueError(f"resource key {key!r} declared twice ({module.__name__})")
            resources[key] = resource
    return resources


def _schedules_and_sensors() -> tuple[list, list]:
    if importlib.util.find_spec("quanta_assets.schedules") is None:
        return [], []
    schedules = importlib.import_module("quanta_assets.schedules")
    return list(getattr(schedules, "SCHEDULES", [])), list(getattr(schedules, "SENSORS", []))


def build_definitions() -> dg.Definitions:
    """Read the asset modules, resources (with the current environment) and schedules."""
    resources = _resources()
    schedules, sensors = _schedules_and_sensors()
    return dg.Definitions(
        assets=wire_assets(dg.load_assets_from_package_module(assets_package), resources),
        asset_checks=dg.load_asset_checks_from_package_module(assets_package),
        schedules=schedules,
        sensors=sensors,
        resources=resources,
    )


defs = build_definitions()
