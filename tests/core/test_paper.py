"""The packaged paper labels: the published bytes, their layout, and comparing with them."""

import gzip
import hashlib
import json
from importlib import resources

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from quanta_core.clustering import paper

PUBLISHED_SHA256 = "4f19211cdb9a3d8d488e7b53d2542f637d74cc9103576c5a29e73e066e812db8"
PUBLISHED_GIT_BLOB = "78329fa5a7964a4b1ac47da16047b28eddea7b1d"  # ERIC-QUANTA-CLUSTERS-GRADIENTS.json


def packaged_bytes():
    return gzip.decompress(resources.files("quanta_core").joinpath("data", paper.PAPER_LABELS_FILE).read_bytes())


def test_packaged_file_is_the_published_one():
    raw = packaged_bytes()
    assert hashlib.sha256(raw).hexdigest() == PUBLISHED_SHA256
    assert hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest() == PUBLISHED_GIT_BLOB
    assert len(raw) == 2_295_145


def test_layout_two_labelings_of_10000_tokens_for_27_ks():
    grads, absolute = paper.load_paper_labels(), paper.load_paper_labels(absolute=True)
    assert tuple(grads) == tuple(absolute) == paper.PAPER_KS and len(paper.PAPER_KS) == 27
    for k in paper.PAPER_KS:
        for labels in (grads[k], absolute[k]):
            assert labels.dtype == np.int64 and labels.shape == (paper.PAPER_NUM_TOKENS,)
            assert np.array_equal(np.unique(labels), np.arange(k))  # exactly k clusters, numbered 0…k−1
        assert adjusted_rand_score(grads[k], absolute[k]) < 0.2  # a different partition of the same tokens
    assert not grads[400].flags.writeable


def test_compare_with_paper():
    grads, absolute = paper.load_paper_labels(), paper.load_paper_labels(absolute=True)
    renamed = (grads[400] * 7 + 3) % 1009  # other cluster names, same partition
    assert paper.compare_with_paper(renamed) == {"k": 400, "adjusted_rand": 1.0, "nmi": 1.0}
    assert paper.compare_with_paper(absolute[400], absolute=True)["adjusted_rand"] == 1.0
    got = paper.compare_with_paper(absolute[400])
    assert got["adjusted_rand"] == pytest.approx(adjusted_rand_score(absolute[400], grads[400]), abs=1e-12)
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(absolute[400], grads[400]), abs=1e-12)
    shuffled = np.random.default_rng(0).permutation(grads[400])
    assert abs(paper.compare_with_paper(shuffled)["adjusted_rand"]) < 0.01
    assert paper.compare_with_paper(grads[10][:], k=10)["k"] == 10


def test_clear_errors():
    with pytest.raises(ValueError, match=r"10,000 selected tokens of pythia-70m-v0 at step143000.*got 600 labels"):
        paper.compare_with_paper(np.zeros(600, dtype=int))
    with pytest.raises(ValueError, match=r"no clustering into k = 3; it has k in \[10, 20"):
        paper.compare_with_paper(np.arange(10_000) % 3)
    with pytest.raises(FileNotFoundError, match="paper labels not found"):
        paper.load_paper_labels("/nonexistent/labels.json")


def test_a_plain_json_file_in_the_published_layout(tmp_path):
    path = tmp_path / "labels.json"
    path.write_bytes(packaged_bytes())
    from_file = paper.load_paper_labels(path)
    assert all(np.array_equal(from_file[k], v) for k, v in paper.load_paper_labels().items())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"10": [[0, 1], [0]]}))
    with pytest.raises(ValueError, match="entry '10' must be"):
        paper.load_paper_labels(bad)


def test_paper_comparable():
    assert paper.paper_comparable("pythia-70m-v0", "step143000", 10_000, 400)
    assert not paper.paper_comparable("pythia-70m", "step143000", 10_000, 400)
    assert not paper.paper_comparable("pythia-70m-v0", "step143000", 10_000, 401)
    assert not paper.paper_comparable("pythia-70m-v0", "step142000", 10_000, 400)
