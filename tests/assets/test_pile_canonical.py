"""The pile_canonical asset on a real Pile-format file and on the embedded mini-Pile."""

import dagster as dg
import numpy as np
import pytest

from quanta_assets.assets.corpus import pile_canonical
from quanta_assets.settings import PileSource
from quanta_core.corpus import minipile
from quanta_core.corpus.pile import read_pile, write_pile

from support.helpers import cache_resources


def _run(cache_dir, pile=None):
    return dg.materialize(
        [pile_canonical],
        resources={**cache_resources(cache_dir), "pile": pile or PileSource()},
    )


def test_pile_file_from_env(cache_dir, tmp_path, monkeypatch, tokenizer):
    texts = ["first document here", "", "x", "second real document, with more words"]
    path = write_pile(tmp_path / "test.jsonl.zst", [(t, {"pile_set_name": "Pile-CC"}) for t in texts])
    monkeypatch.setenv("QUANTA_PILE", str(path))
    result = _run(cache_dir, PileSource(num_documents=3))
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["documents"].value == 3 and meta["embedded_minipile"].value is False
    stored = cache_dir / "corpus" / "pile_canonical"
    ids = np.load(stored / "ids.npy", allow_pickle=False)
    expected = [i for t in texts[:3] for i in tokenizer.encode(t, add_special_tokens=False).ids]
    assert ids.tolist() == expected
    assert meta["predictable_tokens"].value == len(tokenizer.encode(texts[0], add_special_tokens=False).ids) - 1
    assert meta["path"].value == str(stored)


def test_bad_pile_file_fails_with_its_name(cache_dir, tmp_path, monkeypatch):
    path = tmp_path / "broken.jsonl.zst"
    path.write_bytes(b"garbage")
    monkeypatch.setenv("QUANTA_PILE", str(path))
    with pytest.raises(Exception, match="broken.jsonl.zst"):
        _run(cache_dir)
    assert not (cache_dir / "corpus" / "pile_canonical").exists()


def test_missing_pile_file(cache_dir, tmp_path):
    with pytest.raises(Exception, match="Pile file not found"):
        _run(cache_dir, PileSource(pile_path=str(tmp_path / "absent.jsonl.zst")))


def test_minipile_is_deterministic_and_pile_format(tmp_path):
    a = minipile.build_minipile(tmp_path / "a", num_documents=150)
    b = minipile.build_minipile(tmp_path / "b", num_documents=150)
    assert a.read_bytes() == b.read_bytes()
    docs = list(read_pile(a))
    assert len(docs) == 150
    sets = {d.pile_set_name for d in docs}
    assert sets <= {"Github", "PydocTopics"} and "Github" in sets
    assert all(d.text.strip() for d in docs)


def test_embedded_minipile_by_default(cache_dir):
    result = _run(cache_dir, PileSource(minipile_documents=120))
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["embedded_minipile"].value is True and meta["documents"].value == 120
    assert (cache_dir / "corpus" / minipile.minipile_name(120)).is_file()
