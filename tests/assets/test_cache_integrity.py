"""Each materialization records what it wrote (size, content hash); a stored file that no longer
matches is an error naming it when the IO manager loads it, before anything computes on it."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from quanta_assets.compute import ComputeResource
from quanta_assets.resources import QuantaCache
from quanta_core import store
from quanta_core.integrity import fingerprint
from quanta_core.paths import asset_path

from support.helpers import cache_resources

calls: list[str] = []


@dg.asset
def matrix_like() -> np.ndarray:
    return np.arange(50_000, dtype=np.float32).reshape(500, 100)


@dg.asset
def clusters_like(matrix_like: np.ndarray) -> np.ndarray:
    calls.append("clusters_like")
    return np.asarray(matrix_like.sum(axis=1))


def write_stage(params: dict, log) -> dict:
    """A stage that writes its own output (as the GPU stages do)."""
    store.write_value(params["output"], np.full(1000, 2.5, dtype=np.float32))
    return {"written": True}


@dg.asset
def staged_like(context: dg.AssetExecutionContext, cache: QuantaCache, compute: ComputeResource
                ) -> dg.MaterializeResult:
    return compute.run(context, "test_cache_integrity:write_stage",
                       {"output": str(asset_path(cache.path, "staged_like"))})


@dg.asset(ins={"staged_like": dg.AssetIn(metadata={"as_path": True})})
def reads_path(staged_like: Path) -> np.ndarray:
    calls.append("reads_path")
    return np.asarray(store.read_value(staged_like)[:3])


def _materialize(assets, cache, instance, selection=None, raise_on_error=True):
    resources = {**cache_resources(cache), "compute": ComputeResource(backend="local")}
    return dg.materialize(assets, selection=selection, resources=resources, instance=instance,
                          raise_on_error=raise_on_error)


def _metadata(result, key):
    return result.asset_materializations_for_node(key)[0].metadata


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_a_changed_file_is_named_on_load_before_computing(tmp_path, damage):
    cache, calls[:] = tmp_path / "cache", []
    with dg.DagsterInstance.ephemeral() as instance:
        first = _materialize([matrix_like], cache, instance)
        stored = cache / "corpus" / "matrix_like.npy"
        meta = _metadata(first, "matrix_like")
        assert meta["content_size"].value == stored.stat().st_size
        assert meta["content_hash"].value == fingerprint(stored)["hash"]
        assert _materialize([matrix_like, clusters_like], cache, instance, selection=[clusters_like]).success
        data = stored.read_bytes()
        stored.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-4] + b"\0\0\0\1")
        calls[:] = []
        with pytest.raises(Exception, match=rf"matrix_like: {stored}: changed since it was written: "
                                            rf"recorded {len(data)} bytes"):
            _materialize([matrix_like, clusters_like], cache, instance, selection=[clusters_like])
        assert calls == []  # nothing computed on the damaged file


def test_a_stage_output_is_recorded_and_checked_when_loaded_as_a_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cache, calls[:] = tmp_path / "cache", []
    with dg.DagsterInstance.ephemeral() as instance:
        result = _materialize([staged_like], cache, instance)
        stored = cache / "corpus" / "staged_like.npy"
        assert _metadata(result, "staged_like")["content_hash"].value == fingerprint(stored)["hash"]
        assert _materialize([staged_like, reads_path], cache, instance, selection=[reads_path]).success
        stored.write_bytes(stored.read_bytes()[:-8])
        calls[:] = []
        with pytest.raises(Exception, match=rf"staged_like: {stored}: changed since it was written"):
            _materialize([staged_like, reads_path], cache, instance, selection=[reads_path])
        assert calls == []
