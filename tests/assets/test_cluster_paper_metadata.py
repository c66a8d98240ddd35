"""quanta_clusters' agreement with the paper's published clusters (metadata) on the partition the
paper clustered, checked against the packaged labels themselves."""

import numpy as np

from quanta_assets.assets.clusters import _paper_agreement
from quanta_core.clustering.paper import PAPER_MODEL, PAPER_STEP, load_paper_labels


def test_paper_agreement_on_the_papers_partition():
    published = load_paper_labels()[400]
    same = _paper_agreement(PAPER_MODEL, PAPER_STEP, published, 400)
    assert same == {"paper_adjusted_rand": 1.0, "paper_nmi": 1.0}
    relabelled = (published * 7 + 3) % 1009  # the same partition under other cluster numbers
    assert _paper_agreement(PAPER_MODEL, PAPER_STEP, relabelled, 400)["paper_adjusted_rand"] == 1.0
    shuffled = np.random.default_rng(0).permutation(published)
    assert abs(_paper_agreement(PAPER_MODEL, PAPER_STEP, shuffled, 400)["paper_adjusted_rand"]) < 0.01


def test_no_paper_metadata_elsewhere():
    published = load_paper_labels()[400]
    assert _paper_agreement("pythia-70m", PAPER_STEP, published, 400) == {}
    assert _paper_agreement(PAPER_MODEL, "step512", published, 400) == {}
    assert _paper_agreement(PAPER_MODEL, PAPER_STEP, published[:5000], 400) == {}
    assert _paper_agreement(PAPER_MODEL, PAPER_STEP, published, 401) == {}
