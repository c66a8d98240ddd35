"""A vectorized sigmoid fit of many loss trajectories at once.

Each trajectory (one token's loss, nats, at T positions ``x``, e.g. ``x = log10(step + 1)``) is fitted
by least squares with

    L(x) = final + drop · σ((m − x) / w),       σ(u) = 1 / (1 + e^(−u)),

so ``final + drop`` is the loss before (x ≪ m), ``final`` the loss after (x ≫ m), ``m`` the midpoint
(the learning time, in units of x) and ``w > 0`` the width (in units of x; the 10 %–90 % transition
spans ``2 ln 9 · w ≈ 4.39 w``). ``drop < 0`` is a rise.

How (all tokens of a chunk at once, arrays ``[T, C]``):

1. **grid**: for every shape (m, w) of a grid (``midpoints`` values evenly over [x_min, x_max] and as
   many evenly in position index, × ``widths`` values log-spaced over [min_width, max_width]) the
   best ``final`` and ``drop`` are closed-form (a straight-line fit of L on σ), and the residual of
   every token for every shape is one matrix product; each token starts from its best shape;
2. **Levenberg–Marquardt**: up to ``iterations`` damped Gauss–Newton steps on (final, drop, m, ln w)
   for every token together (4 × 4 normal equations per token, a per-token damping that grows ×10
   on a rejected step and shrinks ×0.3 on an accepted one); bounds by projected Newton steps (m or
   ln w at its bound with the descent pointing outward is held, the rest solved, the result clipped),
   so m ∈ [x_min, x_max] and w ∈ [min_width, max_width]; a token stops once an accepted step gains
   < 1e-8 of its SSE;
3. **second start** for tokens with |drop| ≥ ``min_drop_nats`` whose width came out below half the
   gap between the two positions around their midpoint: from the same midpoint with width = that
   gap (a step between two samples is a local optimum where the gradient in w vanishes); the
   better fit is kept.

A transition sharper than the sampling (width < half the gap around m, after the second start) only
says that the loss dropped between those two positions: any m inside the gap fits the samples
equally well, and the reported m is one of them (it may differ with the chunking of the tokens).

**Flags** (bits of ``flags``, uint8; ``flags == 0`` means *well fit*), with ``drop``, R² = 1 − SSE/SST
(SST: sum of squares about the token's mean; R² = 0 for a constant trajectory) and the bounds above:

* ``NO_DROP`` (1): |drop| < ``min_drop_nats`` — the loss never drops (or rises) by that much;
* ``RISES`` (2): drop ≤ −``min_drop_nats`` — the loss rises (its midpoint is when it rose);
* ``NOISY`` (4): R² < ``min_r2`` — a sigmoid explains too little of the trajectory's variance;
* ``EDGE`` (8): m within ``edge_fraction`` × (x_max − x_min) of x_min or x_max — the transition is
  not inside the observed range (e.g. still learning at the last checkpoint);
* ``UNDERDETERMINED`` (16): fewer than ``min_points`` positions (4 parameters need some to spare).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

NO_DROP, RISES, NOISY, EDGE, UNDERDETERMINED = 1, 2, 4, 8, 16
FLAG_NAMES = {NO_DROP: "no_drop", RISES: "rises", NOISY: "noisy", EDGE: "edge", UNDERDETERMINED: "underdetermined"}


@dataclass(frozen=True)
class FitSettings:
    """Grid, refinement and flag rule of :func:`fit_sigmoids` (units of x unless said otherwise)."""

    midpoints: int = 48
    widths: int = 12
    min_width: float | None = None  # default: max(1e-3, smallest gap between positions / 20)
    max_width: float | None = None  # default: (x_max − x_min) / 4
    iterations: int = 40
    min_drop_nats: float = 0.5
    min_r2: float = 0.5
    edge_fraction: float = 0.01
    min_points: int = 6

    def __post_init__(self):
        if self.midpoints < 2 or self.widths < 1 or self.iterations < 0 or self.min_points < 1:
            raise ValueError(f"bad fit settings: {self}")
        if not (self.min_drop_nats >= 0 and 0 <= self.edge_fraction < 0.5 and self.min_r2 <= 1):
            raise ValueError(f"bad flag settings: {self}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Bounds:
    """Where m and w may lie: m ∈ [x_min, x_max], w ∈ [min_width, max_width]."""

    x_min: float
    x_max: float
    min_width: float
    max_width: float


def bounds_for(x: np.ndarray, settings: FitSettings) -> Bounds:
    """The bounds for positions ``x`` ``[T]`` (sorted, distinct), defaults filled in."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or len(x) < 2 or not np.all(np.isfinite(x)) or np.any(np.diff(x) <= 0):
        raise ValueError(f"positions must be ≥ 2 finite, strictly increasing values, got {x!r}")
    span = float(x[-1] - x[0])
    min_width = settings.min_width if settings.min_width is not None else max(1e-3, float(np.diff(x).min()) / 20)
    max_width = settings.max_width if settings.max_width is not None else span / 4
    if not 0 < min_width <= max_width:
        raise ValueError(f"need 0 < min_width ≤ max_width, got {min_width} and {max_width}")
    return Bounds(float(x[0]), float(x[-1]), float(min_width), float(max_width))


def sigmoid_shape(x: np.ndarray, midpoint, width) -> np.ndarray:
    """σ((m − x) / w) for positions ``x`` ``[T]`` and per-token ``midpoint``, ``width`` ``[C]`` → ``[T, C]``
    (as ½ + ½ tanh((m − x) / 2w), which saturates without overflow)."""
    z = np.subtract(midpoint, x[:, None])
    z *= 0.5 / np.asarray(width)
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def sigmoid_curves(x: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """Fitted losses ``[T, C]`` (nats) at positions ``x`` ``[T]`` for ``params`` as :func:`fit_sigmoids` returns."""
    x = np.asarray(x, dtype=np.float64)
    return params["final"] + params["drop"] * sigmoid_shape(x, params["midpoint"], params["width"])


def grid_midpoints(x: np.ndarray, bounds: Bounds, count: int) -> np.ndarray:
    """``count`` midpoints evenly spaced in x and ``count`` evenly spaced in sample index (dense where
    the positions are dense), within [x_min, x_max]; sorted, distinct."""
    even = np.linspace(bounds.x_min, bounds.x_max, count)
    by_index = np.interp(np.linspace(0, len(x) - 1, count), np.arange(len(x)), x)
    return np.unique(np.clip(np.concatenate([even, by_index]), bounds.x_min, bounds.x_max))


def _grid_start(y: np.ndarray, x: np.ndarray, bounds: Bounds, settings: FitSettings):
    """Best grid shape per token: (final, drop, midpoint, width) arrays ``[C]``.

    Scores are float32 matrix products, one width at a time (``[midpoints, C]`` floats at a time)."""
    mids = grid_midpoints(x, bounds, settings.midpoints)
    widths = np.geomspace(bounds.min_width, bounds.max_width, settings.widths)
    y_mean = y.mean(axis=0)
    yc = (y - y_mean).astype(np.float32)
    cols = np.arange(y.shape[1])
    best_score = np.full(y.shape[1], -1.0)
    best_mid, best_width = np.zeros(y.shape[1]), np.zeros(y.shape[1])
    for width in widths:
        shapes = sigmoid_shape(x, mids, np.full(len(mids), width))  # [T, M]
        centered = shapes - shapes.mean(axis=0)
        unit = centered / np.sqrt(np.maximum((centered**2).sum(axis=0), 1e-30))  # unit columns
        dots = np.abs(unit.T.astype(np.float32) @ yc)  # [M, C]; its square is the explained sum of squares
        k = np.argmax(dots, axis=0)
        score = dots[k, cols]
        better = score > best_score
        best_score = np.where(better, score, best_score)
        best_mid = np.where(better, mids[k], best_mid)
        best_width = np.where(better, width, best_width)
    return (*_amplitudes(y, x, best_mid, best_width), best_mid, best_width)


def _sse(y, x, final, drop, mid, width):
    s = sigmoid_shape(x, mid, width)
    r = y - final - drop * s
    return np.einsum("tc,tc->c", r, r), s, r


def _normal_equations(x, s, r, drop, mid, width):
    """JᵀJ ``[C, 4, 4]`` and Jᵀr ``[C, 4]`` for parameters (final, drop, m, ln w)."""
    g = s * (1.0 - s)
    jm = g * (drop / width)
    jt = jm * (x[:, None] - mid)  # ∂L/∂ln w = drop · g · z, z = (x − m)/w
    cols = (None, s, jm, jt)  # None: the column of ones
    n = s.shape[1]
    jtj = np.empty((n, 4, 4))
    jtr = np.empty((n, 4))
    for i in range(4):
        ci = cols[i]
        jtr[:, i] = r.sum(axis=0) if ci is None else np.einsum("tc,tc->c", ci, r)
        for j in range(i, 4):
            cj = cols[j]
            if ci is None and cj is None:
                value = np.full(n, float(s.shape[0]))
            elif ci is None or cj is None:
                value = (cj if ci is None else ci).sum(axis=0)
            else:
                value = np.einsum("tc,tc->c", ci, cj)
            jtj[:, i, j] = jtj[:, j, i] = value
    return jtj, jtr


def _lm_step(x, s, r, params, lam, bounds: Bounds):
    """One damped Gauss–Newton proposal for every token: new (final, drop, mid, width).

    Bounds by a projected Newton step: m or ln w at its bound with the descent direction (Jᵀr)
    pointing outward is held fixed and the step solved for the other parameters; the result is then
    projected into the bounds."""
    final, drop, mid, width = params
    jtj, jtr = _normal_equations(x, s, r, drop, mid, width)
    diag = np.einsum("cii->ci", jtj)
    damped = jtj + (lam[:, None] * diag + 1e-12 * (1.0 + diag))[:, :, None] * np.eye(4)
    log_width, lo_t, hi_t = np.log(width), np.log(bounds.min_width), np.log(bounds.max_width)
    held = np.stack([
        ((mid <= bounds.x_min) & (jtr[:, 2] < 0)) | ((mid >= bounds.x_max) & (jtr[:, 2] > 0)),
        ((log_width <= lo_t + 1e-12) & (jtr[:, 3] < 0)) | ((log_width >= hi_t - 1e-12) & (jtr[:, 3] > 0)),
    ], axis=1)  # [C, 2]: m, ln w
    for k, i in ((0, 2), (1, 3)):
        fix = held[:, k]
        damped[fix, i, :], damped[fix, :, i], damped[fix, i, i], jtr[fix, i] = 0.0, 0.0, 1.0, 0.0
    step = np.linalg.solve(damped, jtr[:, :, None])[:, :, 0]
    return (final + step[:, 0], drop + step[:, 1], np.clip(mid + step[:, 2], bounds.x_min, bounds.x_max),
            np.exp(np.clip(log_width + step[:, 3], lo_t, hi_t)))


def _refine(y, x, start, bounds: Bounds, iterations: int, tolerance: float = 1e-8):
    """Levenberg–Marquardt from ``start`` (final, drop, mid, width); returns the same and the SSE.

    A token stops (and leaves the working arrays) once an accepted step improves its SSE by less than
    ``tolerance`` (relative) or its damping reaches 1e9 (no step helps)."""
    out = [np.array(p, dtype=np.float64) for p in start]
    best_sse, s, r = _sse(y, x, *out)
    active = np.arange(y.shape[1])
    params = [p.copy() for p in out]
    sse, lam, ya = best_sse.copy(), np.full(len(active), 1e-3), y
    for _ in range(iterations):
        new = _lm_step(x, s, r, params, lam, bounds)
        new_sse, new_s, new_r = _sse(ya, x, *new)
        ok = new_sse < sse
        gain = np.where(ok, (sse - new_sse) / np.maximum(sse, 1e-300), 0.0)
        params = [np.where(ok, a, b) for a, b in zip(new, params)]
        sse = np.where(ok, new_sse, sse)
        s, r = np.where(ok, new_s, s), np.where(ok, new_r, r)
        lam = np.where(ok, lam * 0.3, lam * 10.0)
        lam = np.maximum(lam, 1e-9)
        done = (ok & (gain < tolerance)) | (lam >= 1e9)
        for p_out, p in zip(out, params):
            p_out[active] = p
        best_sse[active] = sse
        if done.all():
            break
        if done.any():
            keep = ~done
            active, sse, lam, s, r = active[keep], sse[keep], lam[keep], s[:, keep], r[:, keep]
            params = [p[keep] for p in params]
            ya = y[:, active]
    return (*out, best_sse)


def _amplitudes(y: np.ndarray, x: np.ndarray, mid: np.ndarray, width: np.ndarray):
    """Least-squares (final, drop) ``[C]`` for fixed shapes (mid, width) ``[C]``."""
    s = sigmoid_shape(x, mid, width)
    sc, yc = s - s.mean(axis=0), y - y.mean(axis=0)
    drop = np.einsum("tc,tc->c", sc, yc) / np.maximum(np.einsum("tc,tc->c", sc, sc), 1e-300)
    return y.mean(axis=0) - drop * s.mean(axis=0), drop


def _retry_sharp(y, x, bounds: Bounds, settings: FitSettings, fit) -> None:
    """Second start for dropping tokens whose width came out below half the gap between the positions
    around their midpoint (a step between two samples, where the gradient in w vanishes and a smoother
    optimum may lie): width = that gap, same midpoint; the better fit is kept (``fit`` updated in place)."""
    final, drop, mid, width, sse = fit
    k = np.clip(np.searchsorted(x, mid), 1, len(x) - 1)
    gap = x[k] - x[k - 1]
    again = np.flatnonzero((width < 0.5 * gap) & (np.abs(drop) >= settings.min_drop_nats))
    if len(again) == 0:
        return
    ya = y[:, again]
    w2 = np.clip(gap[again], bounds.min_width, bounds.max_width)
    start = (*_amplitudes(ya, x, mid[again], w2), mid[again], w2)
    *params, sse2 = _refine(ya, x, start, bounds, settings.iterations)
    better = sse2 < sse[again]
    for out, new in zip((final, drop, mid, width, sse), (*params, sse2)):
        out[again[better]] = new[better]


def flags_for(drop, r2, midpoint, bounds: Bounds, num_points: int, settings: FitSettings) -> np.ndarray:
    """The flag bits (module docstring) for fitted ``drop``, ``r2``, ``midpoint`` ``[C]``; uint8 ``[C]``."""
    flags = np.zeros(len(drop), dtype=np.uint8)
    flags[np.abs(drop) < settings.min_drop_nats] |= NO_DROP
    flags[drop <= -settings.min_drop_nats] |= RISES
    flags[r2 < settings.min_r2] |= NOISY
    margin = settings.edge_fraction * (bounds.x_max - bounds.x_min)
    flags[(midpoint <= bounds.x_min + margin) | (midpoint >= bounds.x_max - margin)] |= EDGE
    if num_points < settings.min_points:
        flags |= UNDERDETERMINED
    return flags


def fit_sigmoids(y: np.ndarray, x: np.ndarray, settings: FitSettings = FitSettings()) -> dict[str, np.ndarray]:
    """Fit every column of ``y`` (float ``[T, C]``, nats, finite) at positions ``x`` (``[T]``, increasing).

    Returns float64 ``[C]`` arrays ``final``, ``drop`` (nats), ``midpoint``, ``width`` (units of x),
    ``sse`` (nats²), ``r2``, ``rms`` (root-mean-square residual, nats) and uint8 ``flags``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != len(x):
        raise ValueError(f"y must be [T, C] with T = {len(x)} positions, got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y holds non-finite losses")
    bounds = bounds_for(x, settings)
    final, drop, mid, width, sse = _refine(y, x, _grid_start(y, x, bounds, settings), bounds, settings.iterations)
    _retry_sharp(y, x, bounds, settings, (final, drop, mid, width, sse))
    centered = y - y.mean(axis=0)
    sst = np.einsum("tc,tc->c", centered, centered)
    r2 = np.where(sst > 1e-12 * len(x), 1.0 - sse / np.maximum(sst, 1e-300), 0.0)
    return {
        "final": final, "drop": drop, "midpoint": mid, "width": width, "sse": sse, "r2": r2,
        "rms": np.sqrt(sse / len(x)), "flags": flags_for(drop, r2, mid, bounds, len(x), settings),
    }
