"""Eigensolvers for the spectral embedding of a dense affinity matrix.

Both solvers compute what ``sklearn.manifold.spectral_embedding(A, n_components=m,
drop_first=False)`` computes for a dense affinity ``A`` (``[S, S]`` float64): the m eigenvectors of
the normalized Laplacian ``L = I − D^−½ A₀ D^−½`` (``A₀`` = A with a zero diagonal, D its row
sums) with the smallest eigenvalues, each divided by ``√D`` and sign-normalized (largest |entry|
positive), returned as the columns of a float64 ``[S, m]`` array.

* ``"arpack"``: scikit-learn's own call (ARPACK in shift-invert mode, ``sigma = −1e−5``: an LU
  factorization of ``L − σI`` and one triangular solve per Lanczos step). This is exactly what
  ``SpectralClustering(affinity="precomputed")`` runs.
* ``"eigh"``: LAPACK's MRRR driver (``scipy.linalg.eigh(L, subset_by_index=[0, m − 1],
  driver="evr")``) on the same Laplacian, built in place. Exact as well (to rounding); several
  times faster at S = 10,000 because it needs no factorization and no restarts. The eigenvectors
  agree with ARPACK's to ~1e−10 where the eigenvalues are apart; inside a (near-)degenerate
  eigenvalue the two may return different bases of the same space (k-means does not care about a
  rotation within the embedded space, but it does when the cut at m falls inside such a space).

Both consume the same random draw (ARPACK's start vector ``uniform(−1, 1, S)``) from the
``RandomState`` they are given, so the k-means that follows starts from the same state either way.
"""

from __future__ import annotations

import warnings

import numpy as np

EIGEN_SOLVERS = ("arpack", "eigh")


def check_eigen_solver(eigen_solver: str) -> str:
    if eigen_solver not in EIGEN_SOLVERS:
        raise ValueError(f"eigen_solver must be one of {', '.join(map(repr, EIGEN_SOLVERS))}, got {eigen_solver!r}")
    return eigen_solver


def sign_flip(maps: np.ndarray) -> np.ndarray:
    """Flip each column of ``maps`` (``[S, m]``) so that its entry of largest magnitude is positive
    (scikit-learn's ``_deterministic_vector_sign_flip``, on columns). In place; returns ``maps``."""
    rows = np.argmax(np.abs(maps), axis=0)
    maps *= np.sign(maps[rows, np.arange(maps.shape[1])])
    return maps


def _arpack_embedding(affinity: np.ndarray, m: int, rng: np.random.RandomState) -> np.ndarray:
    from sklearn.manifold import spectral_embedding

    with warnings.catch_warnings():  # m ≥ S: scipy falls back to a full eigh, which is fine
        warnings.filterwarnings("ignore", message="k >= N", category=RuntimeWarning)
        return spectral_embedding(affinity, n_components=m, random_state=rng, drop_first=False)


def _eigh_embedding(affinity: np.ndarray, m: int, rng: np.random.RandomState) -> np.ndarray:
    from scipy.linalg import eigh
    from scipy.sparse.csgraph import laplacian
    from sklearn.utils.validation import check_symmetric

    affinity = check_symmetric(affinity)  # as scikit-learn does (averages A and Aᵀ if they differ)
    lap, dd = laplacian(affinity, normed=True, return_diag=True, copy=False)  # in place of affinity
    np.fill_diagonal(lap, 1.0)  # scikit-learn's _set_diag
    rng.uniform(-1, 1, lap.shape[0])  # the draw ARPACK's start vector would take
    _, vectors = eigh(lap, subset_by_index=[0, m - 1], driver="evr", overwrite_a=True, check_finite=False)
    vectors /= dd[:, None]
    return sign_flip(vectors)


def dense_spectral_embedding(
    affinity: np.ndarray, m: int, rng: np.random.RandomState, eigen_solver: str = "arpack"
) -> np.ndarray:
    """The m-column spectral embedding (float64 ``[S, m]``) of a dense affinity (``[S, S]``
    float64, values ≥ 0). ``"eigh"`` overwrites ``affinity`` (pass a copy to keep it);
    ``"arpack"`` leaves it alone. Draws from ``rng`` as scikit-learn does."""
    check_eigen_solver(eigen_solver)
    if eigen_solver == "eigh":
        maps = _eigh_embedding(affinity, m, rng)
    else:
        maps = _arpack_embedding(affinity, m, rng)
    return np.ascontiguousarray(maps, dtype=np.float64)
