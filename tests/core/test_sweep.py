"""The paper's sweep on one similarity: labels at each k equal a direct spectral_clustering at that k,
the capped cluster counts and scaled slope ranks, the slope and its interval on the paper's labels,
and the envelope chart's points on log-log axes."""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from quanta_core.clustering import spectral as qc
from quanta_core.clustering import sweep as sw
from quanta_core.clustering.roads import ClusterOptions
from quanta_core.report import charts
from quanta_core.similarity.knn import knn_from_dense

from support.helpers import planted_cosines

pytestmark = pytest.mark.usefixtures("one_thread")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize("eigen_solver", ["arpack", "eigh"])
def test_labels_at_each_k_equal_a_direct_spectral_clustering(eigen_solver):
    C, _ = planted_cosines(160, 12, 24, 0.5, 3)
    options = ClusterOptions(num_clusters=1, n_init=3, eigen_solver=eigen_solver)
    result = sw.sweep_similarity({"indices": np.arange(160), "matrix": C}, options, ks=(10, 20, 30, 90), draws=50)
    assert list(result.labels) == [10, 20, 30]  # 90 > S / 2
    for k, labels in result.labels.items():
        direct = qc.spectral_clustering(C, k, n_init=3, eigen_solver=eigen_solver)
        np.testing.assert_array_equal(labels, direct, err_msg=f"k = {k}")
    np.testing.assert_array_equal(result.envelope, qc.rank_frequency_envelope(result.labels))
    assert result.ranks == (2, 16) and result.slope == qc.envelope_slope(result.envelope, (2, 16))
    assert result.interval[0] <= result.slope <= result.interval[1]
    assert result.labels_table().shape == (160, 3) and result.envelope_table()["size"].tolist()[:3] == \
        result.envelope[:3].tolist()


def test_sparse_road_sweep_clusters_the_knn_graph():
    C, truth = planted_cosines(150, 10, 24, 0.3, 1)
    idx, cos = knn_from_dense(C, 8)
    options = ClusterOptions(num_clusters=1, n_init=3, knn_eigen_solver="arpack")
    result = sw.sweep_similarity({"indices": np.arange(150), "knn_indices": idx, "knn_cosines": cos}, options,
                                 ks=(10, 20), draws=20)
    assert qc.compare_labelings(result.labels[10], truth)["adjusted_rand"] == 1.0
    assert result.summary()["road"] == "sparse" and result.labels[20].max() == 19


def test_cluster_counts_and_slope_ranks():
    assert sw.sweep_ks(600) == [k for k in sw.PAPER_KS if k <= 300] and len(sw.sweep_ks(10_000)) == 27
    assert sw.slope_ranks(10_000, 1100) == (100, 1000) and sw.slope_ranks(50_000, 1100) == (100, 1000)
    assert sw.slope_ranks(600, 300) == (6, 60) and sw.slope_ranks(2_000, 150) == (20, 150)
    with pytest.raises(ValueError, match="no cluster count"):
        sw.sweep_ks(15)


def test_slope_interval_of_a_noisy_power_law_covers_its_exponent():
    rank = np.arange(1, 1101, dtype=float)
    noisy = np.exp(np.log(5e4 * rank ** -1.3) + np.random.default_rng(0).normal(scale=0.2, size=rank.size))
    lo, hi = sw.slope_interval(noisy, (100, 1000), draws=400)
    assert lo < -1.3 < hi and hi - lo < 0.1


def test_paper_slope_stays():
    result = sw.paper_sweep()
    assert result.slope == pytest.approx(-1.2376, abs=5e-5) and result.ranks == (100, 1000)
    assert round(result.slope, 4) == sw.PAPER_LABELS_SLOPE
    assert result.summary(paper=True)["paper_envelope_slope"] == -1.24
    assert result.interval[0] < result.slope < result.interval[1]


def test_envelope_chart_points_on_log_log_axes_and_escaped_legend():
    envelope = np.array([400, 200, 100, 50, 25, 12, 6, 3, 0, 0])
    svg = charts.envelope_svg(envelope, -1.0, (2, 8), (-1.1, -0.9), paper_slope=-1.24)
    root = ET.fromstring(svg)
    line = [p for p in root.iter(f"{SVG}polyline") if p.get("stroke") == "currentColor"][0]
    points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
    assert len(points) == 8  # zeros left out
    left, right, top, bottom = 56, 16, 28, 42
    for r, (px, py) in enumerate(points, start=1):
        assert px == pytest.approx(left + (520 - left - right) * math.log10(r) / 1.0, abs=0.01)
        assert py == pytest.approx(300 - bottom - (300 - bottom - top) * math.log10(envelope[r - 1]) / math.log10(400),
                                   abs=0.01)
    fit = root.find(f"{SVG}polyline[@class='envelope-fit']")
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(","))) for p in fit.get("points").split()]
    assert (y1 - y0) / (x1 - x0) == pytest.approx(1.0 * (300 - bottom - top) / math.log10(400)
                                                 / (520 - left - right), rel=1e-3)  # slope −1 in data units
    assert "slope -1.00 (95 % -1.10 to -0.90), ranks 2–8; paper -1.24" in root.get("aria-label")
    assert "<script" not in svg and "&" not in svg.replace("&amp;", "")
