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


def _missing_input_error(cache_root=None) -> str:
    """The error of loading ``table_like`` where nothing is stored (the cache resource's root given or not)."""
    from quanta_assets.io_manager import QuantaIOManager
    from quanta_assets.resources import QuantaCache

    cache = QuantaCache(root=cache_root)
    result = dg.materialize([corpus_like, table_like, page_like], partition_key=PARTITION, selection=[page_like],
                            resources={"cache": cache, "io_manager": QuantaIOManager(cache=cache)},
                            raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    error = failure.step_failure_data.error
    return str(error.cause.message if error.cause else error.message)


def test_missing_input_names_the_cache_and_where_it_came_from(tmp_path, monkeypatch):
    import quanta_core.environment as environment

    project = tmp_path / "clone"
    project.mkdir()
    (project / ".env").write_text(f"QUANTA_CACHE_DIR={tmp_path / 'from-dotenv'}\n")
    monkeypatch.setattr(environment, "project_root", lambda: project)
    monkeypatch.setenv("QUANTA_CACHE_DIR", str(tmp_path / "from-env"))
    message = _missing_input_error()
    assert f"nothing stored at {tmp_path / 'from-env' / 'pythia-70m' / 'step1000' / 'table_like'}" in message
    assert "from $QUANTA_CACHE_DIR" in message and "QUANTA_CACHE_DIR=<dir>" in message
    monkeypatch.delenv("QUANTA_CACHE_DIR")
    message = _missing_input_error()
    assert f"the cache {tmp_path / 'from-dotenv'} (from {project / '.env'})" in message
    (project / ".env").unlink()
    assert f"the cache {project / '.quanta_cache'} (the clone's default)" in _missing_input_error()
    assert f"the cache {tmp_path / 'given'} (given explicitly)" in _missing_input_error(str(tmp_path / "given"))
