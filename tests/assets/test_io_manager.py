"""The cache IO manager: layout, formats (no pickle), memory-mapped loads, atomic writes."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from quanta_assets.partitions import checkpoint_key, checkpoint_partitions

from support.helpers import cache_resources

PARTITION = checkpoint_key("pythia-70m", "step1000")


@dg.asset
def corpus_like() -> dict:
    return {
        "ids": np.arange(10, dtype=np.uint16),
        "table": pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}),
        "info": {"k": 1},
    }


@dg.asset(partitions_def=checkpoint_partitions)
def table_like(corpus_like: dict) -> np.ndarray:
    return np.asarray(corpus_like["ids"], dtype=np.float32) * 2


@dg.asset(partitions_def=checkpoint_partitions)
def page_like(table_like: np.ndarray) -> str:
    return f"<html>{float(table_like.sum())}</html>"


def _materialize(assets, cache, partition_key=None, selection=None):
    return dg.materialize(
        assets, partition_key=partition_key, selection=selection,
        resources=cache_resources(cache),
    )


def test_layout_formats_and_loading(tmp_path):
    cache = tmp_path / "cache"
    assert _materialize([corpus_like], cache).success
    result = _materialize([corpus_like, table_like, page_like], cache, PARTITION, selection=[table_like, page_like])
    assert result.success
    d = cache / "corpus" / "corpus_like"
    assert sorted(p.name for p in d.iterdir()) == ["ids.npy", "info.json", "table.parquet"]
    assert np.load(d / "ids.npy", allow_pickle=False).tolist() == list(range(10))
    assert pd.read_parquet(d / "table.parquet")["b"].tolist() == ["x", "y"]
    assert json.loads((d / "info.json").read_text()) == {"k": 1}
    losses = cache / "pythia-70m" / "step1000" / "table_like.npy"
    assert np.load(losses, allow_pickle=False).tolist() == [2.0 * i for i in range(10)]
    assert (cache / "pythia-70m" / "step1000" / "page_like.html").read_text() == "<html>90.0</html>"
    paths = {
        e.asset_key.to_user_string(): e.materialization.metadata["path"].value
        for e in result.get_asset_materialization_events()
    }
    assert paths == {"table_like": str(losses), "page_like": str(cache / "pythia-70m" / "step1000" / "page_like.html")}
    # no temporary leftovers anywhere in the cache
    assert not [p for p in cache.rglob(".*")]


def test_npy_inputs_are_memory_mapped(tmp_path):
    seen = {}

    @dg.asset(partitions_def=checkpoint_partitions)
    def consumer(table_like: np.ndarray) -> np.ndarray:
        seen["type"] = type(table_like)
        return np.asarray(table_like[:2])

    cache = tmp_path / "cache"
    _materialize([corpus_like], cache)
    assert _materialize([corpus_like, table_like, consumer], cache, PARTITION, selection=[table_like, consumer]).success
    assert seen["type"] is np.memmap


def test_object_arrays_are_refused(tmp_path):
    @dg.asset
    def bad() -> np.ndarray:
        return np.array([{"a": 1}], dtype=object)

    with pytest.raises(TypeError, match="pickle"):
        _materialize([bad], tmp_path / "cache")
    assert not (tmp_path / "cache" / "corpus" / "bad.npy").exists()


def test_failure_mid_write_leaves_nothing_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert _materialize([corpus_like], cache).success
    before = {p: p.read_bytes() for p in (cache / "corpus" / "corpus_like").iterdir()}

    real_to_parquet = pd.DataFrame.to_parquet

    def exploding_to_parquet(self, f, *args, **kwargs):
        f.write(b"PAR1 half a file")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", exploding_to_parquet)
    with pytest.raises(OSError, match="disk full"):
        _materialize([corpus_like], cache)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real_to_parquet)
    # the previous complete output is untouched and nothing half-written is left around
    assert {p: p.read_bytes() for p in (cache / "corpus" / "corpus_like").iterdir()} == before
    assert sorted(p.name for p in (cache / "corpus").iterdir()) == ["corpus_like"]
