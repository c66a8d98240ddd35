"""The cache IO manager: asset values as files in the cache layout, never pickle, atomic writes.

Layout: :mod:`quanta_core.paths` (``<cache>/corpus/A``, ``<cache>/<model>/<step>/A``,
``<cache>/<model>/A``, ``<cache>/families/<family>/<step>/A``); formats: :mod:`quanta_core.store`
(``.npy`` memory-mapped on load, ``.parquet``, ``.html``, a directory for a ``dict``). Every output
records its ``path``, ``content_size`` and ``content_hash``; on load a stored file that no longer
matches what its latest materialization recorded is an error naming it (:mod:`quanta_assets.recorded`).

Inputs may set metadata on their ``AssetIn``:

* ``{"allow_missing_partitions": True}``: an input that spans many partitions (e.g. every step
  of a model) loads as ``{partition key: value}`` without the partitions never materialized; a
  single-partition input with nothing stored loads as ``None`` (an optional input);
* ``{"as_path": True}``: the input is the stored path (``pathlib.Path``), not the value — for
  stages that read their inputs themselves, e.g. as a job on a cluster.

Assets that write their own files (the stages) return ``dg.MaterializeResult``; the IO manager is
then not called for their output, and reads them like any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg

from quanta_assets.recorded import verify_stored
from quanta_assets.resources import QuantaCache
from quanta_core import store
from quanta_core.integrity import fingerprint_metadata
from quanta_core.paths import asset_path, describe_cache
from quanta_core.steps import sorted_steps


def partition_parts(partition_key: str | None) -> tuple[str | None, str | None]:
    """``(model, step)`` of a partition key: a model × step key, a model key, or ``None``."""
    if partition_key is None:
        return None, None
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        return dims["model"], dims["step"]
    if "|" in partition_key:  # a model × step key as a plain string ("<model>|<step>")
        model, step = partition_key.split("|")
        return model, step
    return str(partition_key), None


def partition_dims(partition_key: str | None) -> dict[str, str]:
    """The keyword arguments of :func:`quanta_core.paths.asset_path` for a partition key:
    ``{}`` (unpartitioned), ``{"model"}``, ``{"model", "step"}`` or ``{"family", "step"}``."""
    if isinstance(partition_key, dg.MultiPartitionKey) and "family" in partition_key.keys_by_dimension:
        return dict(partition_key.keys_by_dimension)
    model, step = partition_parts(partition_key)
    return {k: v for k, v in (("model", model), ("step", step)) if v is not None}


def by_step(partitions: dict) -> dict:
    """An input spanning every step of one model, ``{"<model>|<step>": value}``, as
    ``{"<step>": value}`` in step order."""
    values = {partition_parts(key)[1]: value for key, value in partitions.items()}
    return {step: values[step] for step in sorted_steps(values)}


def _instance(context: dg.InputContext) -> dg.DagsterInstance | None:
    """The run's instance (``None`` for a context built without one, e.g. in a unit test)."""
    try:
        return context.instance
    except dg.DagsterInvariantViolationError:
        return None


class QuantaIOManager(dg.ConfigurableIOManager):
    """Stores assets under the ``cache`` resource's directory (see the module docstring)."""

    cache: QuantaCache

    def path_for(self, asset_key: dg.AssetKey, partition_key: str | None) -> Path:
        """The suffix-less stored path of one asset partition."""
        return asset_path(self.cache.path, "/".join(asset_key.path), **partition_dims(partition_key))

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partition = context.asset_partition_key if context.has_asset_partitions else None
        written = store.write_value(self.path_for(context.asset_key, partition), obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(written)), **fingerprint_metadata(written)})

    def load_input(self, context: dg.InputContext) -> Any:
        meta = context.definition_metadata or {}
        optional, as_path = bool(meta.get("allow_missing_partitions")), bool(meta.get("as_path"))
        instance = _instance(context)
        if not context.has_asset_partitions:
            return self._load(instance, context.asset_key, None, optional, as_path)
        keys = context.asset_partition_keys
        if len(keys) == 1:  # the same partition, or a mapping onto one partition: the value itself
            return self._load(instance, context.asset_key, keys[0], optional, as_path)
        loaded = {key: self._load(instance, context.asset_key, key, optional, as_path) for key in keys}
        return {key: value for key, value in loaded.items() if value is not None}

    def _load(self, instance: dg.DagsterInstance | None, asset_key: dg.AssetKey, partition: str | None,
              optional: bool, as_path: bool) -> Any:
        path = self.path_for(asset_key, partition)
        stored = store.stored_path(path)
        if stored is None:
            if optional:
                return None
            where = f" partition {partition}" if partition else ""
            raise FileNotFoundError(f"{asset_key.to_user_string()}{where}: nothing stored at {path}; looked in "
                                    f"{describe_cache(self.cache.root)}. Materialize it first if this is the "
                                    "right cache.")
        if instance is not None:
            verify_stored(instance, asset_key, partition, stored)
        return stored if as_path else store.read_value(path)
