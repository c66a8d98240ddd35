"""Gram numerics: row norms, the scaled float16 store, and ``A @ B.T`` accurate to float32
rounding over millions of columns; the guard that keeps CUDA matrix products as asked.

Products are float32 partial sums over column chunks of ≤ 8,192, summed in float64 (a plain
float32 sum over 19M products drifts by ~1e-4). Precision modes:

``ieee``
    IEEE float32 products (torch's GEMM: MKL on the CPU, SIMT float32 on CUDA).
``3xtf32``
    CUDA only: each float32 operand split as ``hi + lo`` (both TF32: 10 stored mantissa bits),
    ``a·b ≈ hi·hi + hi·lo + lo·hi`` on tensor cores (the dropped ``lo·lo`` and the rounding of
    ``lo`` are ~2^-21 relative). Rows stored in float16 are exact in TF32, so ``lo`` is zero and
    one product suffices. ``3xtf32-emulated`` runs the same split on any device with IEEE float32
    products of the rounded operands (products of TF32 numbers are exact in float32): the tests'
    check of the split's numerics on the CPU. Tensor cores' own accumulation must be measured on
    the GPU (``benchmarks/gpu_similarity.sh``).
"""

from __future__ import annotations

import itertools

import torch

GRAM_MAX_COLUMNS = 1 << 13  # float32 partial sums over at most 8,192 products, then float64
GRAM_GROUP_ELEMENTS = 1 << 27  # CUDA: columns of one batched product × (m + n) (512 MiB of float32)
NORM_CHUNK = 1 << 16  # columns per float32 partial sum of squares
FP16_TARGET_MAX = 2.0**14  # scaled rows have max |x| in [2^13, 2^14]: far from fp16 overflow
MODES = ("ieee", "3xtf32", "3xtf32-emulated")


def row_sq_norms(g: torch.Tensor) -> torch.Tensor:
    """Squared L2 norms of the rows of ``g`` (``[N, P]``), float64 ``[N]``: float32 (cascade)
    sums over column chunks of 65,536, accumulated in float64 (a plain float32 norm over 19M
    elements is off by ~1e-3 on CPU)."""
    sq = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    for a in range(0, g.shape[1], NORM_CHUNK):
        sq += g[:, a : a + NORM_CHUNK].float().square().sum(1).double()
    return sq


def to_fp16_(src: torch.Tensor, dst: torch.Tensor, norms: torch.Tensor) -> None:
    """Store float32 rows ``src`` (overwritten: used as scratch) as float16 in ``dst``, scaled
    before the cast by a power of two so each row's largest element is in [2^13, 2^14] (small
    elements stay out of fp16's subnormal range). ``norms`` (float64 ``[N]``) receives the L2 norm
    of each *stored* row (taken after rounding), so the Gram of the stored rows divided by these
    has an exact unit diagonal and only the rounding of directions remains."""
    maxabs = torch.zeros(src.shape[0], dtype=torch.float32, device=src.device)
    for a in range(0, src.shape[1], NORM_CHUNK):
        maxabs = torch.maximum(maxabs, src[:, a : a + NORM_CHUNK].abs().amax(1))
    scale = torch.exp2(torch.floor(torch.log2(FP16_TARGET_MAX / maxabs.double().clamp_min(1e-30))))
    src.mul_(scale.float()[:, None])
    dst.copy_(src)
    norms.copy_(row_sq_norms(dst).sqrt())


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 → the nearest TF32 value (10 stored mantissa bits, ties away from zero, as CUDA's
    ``cvt.rna.tf32.f32``), still float32."""
    bits = x.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def _products(x: torch.Tensor, y: torch.Tensor, mode: str, exact_tf32: bool) -> torch.Tensor:
    """``x @ y.T`` in float32 (``[..., m, k]`` × ``[..., n, k]``; batched when 3-D) in ``mode``."""
    if mode == "ieee":  # torch's own GEMM (MKL on the CPU): its blocked sums are ~10× closer to
        # float64 here than oneDNN's (3e-8 vs 6e-7 over 8,192 products of float16-valued rows)
        return x @ y.transpose(-1, -2)
    def mm(u, v):  # on CUDA inside ``tf32(True)``: TF32 tensor cores; elsewhere IEEE float32
        return u @ v.transpose(-1, -2)

    if exact_tf32:  # float16 rows: hi is the value itself, lo is zero
        return mm(x, y)
    xh, yh = round_tf32(x), round_tf32(y)
    xl, yl = round_tf32(x - xh), round_tf32(y - yh)
    return mm(xh, yh) + (mm(xh, yl) + mm(xl, yh))


def _tiles(m: int, tile: int) -> list[tuple[slice, slice]]:
    """Row-tile pairs ``(i, j)`` with ``i ≤ j`` covering the upper triangle of an ``m × m`` product."""
    cuts = list(range(0, m, tile)) + [m]
    spans = [slice(a, b) for a, b in itertools.pairwise(cuts)]
    return [(si, sj) for i, si in enumerate(spans) for sj in spans[i:]]


def gram(a: torch.Tensor, b: torch.Tensor | None = None, *, mode: str = "ieee", tile: int | None = None,
         columns: int = GRAM_MAX_COLUMNS, batched: bool | None = None) -> torch.Tensor:
    """``a @ b.T`` (float32 or float16 rows ``a`` ``[m, P]``, ``b`` ``[n, P]``), float64 ``[m, n]``.

    ``b=None``: ``a @ a.T``, computed on the upper row tiles only (``tile`` rows each; default:
    all of ``a`` in one tile on CUDA, 64 on CPU) and mirrored; exactly symmetric.
    ``columns``: products per float32 partial sum. ``batched`` (default: on CUDA) multiplies the
    chunks of a column group of ~512 MiB by one batched product (few launches, the same sums);
    otherwise chunk by chunk (the CPU's way).
    """
    if mode not in MODES:
        raise ValueError(f"Gram mode must be one of {MODES}, got {mode!r}")
    if mode == "3xtf32" and a.device.type != "cuda":
        raise ValueError("Gram mode '3xtf32' needs CUDA tensor cores; use '3xtf32-emulated' on the CPU")
    same = b is None
    b = a if same else b
    m, n, p = a.shape[0], b.shape[0], a.shape[1]
    cuda = a.device.type == "cuda"
    batched = cuda if batched is None else batched
    tile = tile or (max(m, 1) if cuda else 64)
    pairs = _tiles(m, tile) if same else [(slice(0, m), slice(0, n))]
    exact_tf32 = a.dtype == torch.float16 and b.dtype == torch.float16
    out = torch.zeros(m, n, dtype=torch.float64, device=a.device)
    group = columns * max(1, GRAM_GROUP_ELEMENTS // (columns * (m + n))) if batched else columns
    with tf32(mode == "3xtf32"):
        for c in range(0, p, group):
            x, y = _chunks(a, c, group, columns), (None if same else _chunks(b, c, group, columns))
            for si, sj in pairs:
                yj = x[..., sj, :] if same else y
                part = _products(x[..., si, :], yj, mode, exact_tf32)
                out[si, sj] += part.sum(0, dtype=torch.float64) if part.dim() == 3 else part.double()
    if same:
        for si, sj in pairs:
            if si == sj:
                out[si, si] = (out[si, si] + out[si, si].T) / 2
            else:
                out[sj, si] = out[si, sj].T
    return out


def _chunks(a: torch.Tensor, c: int, group: int, columns: int) -> torch.Tensor:
    """Columns ``[c, c + group)`` of ``a`` as contiguous float32: ``[m, k]`` for one chunk, else
    ``[chunks, m, columns]`` (the last chunk zero-padded)."""
    x = a[:, c : c + group].float().contiguous()  # a copy: strided rows make slow products
    k = x.shape[1]
    if k <= columns:
        return x
    chunks = -(-k // columns)
    if chunks * columns != k:
        x = torch.nn.functional.pad(x, (0, chunks * columns - k))
    return x.view(x.shape[0], chunks, columns).transpose(0, 1)


class tf32:
    """Inside: CUDA float32 matrix products on TF32 tensor cores when ``on`` (else unchanged)."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        self.saved = torch.backends.cuda.matmul.allow_tf32
        if self.on:
            torch.backends.cuda.matmul.allow_tf32 = True
        return self

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32 = self.saved


class PrecisionGuard:
    """Full float32 matrix products on CUDA inside (no TF32, no reduced-precision fp16 sums)."""

    def __enter__(self):
        self.saved = (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        )
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        return self

    def __exit__(self, *exc):
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction,
        ) = self.saved


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

def cosines(products: torch.Tensor, a_norm: torch.Tensor, b_norm: torch.Tensor) -> torch.Tensor:
    """Dot products of stored rows (float64 ``[m, n]``) divided by the rows' norms; a zero row
    (norm 0) has cosine 0 with everything, itself included."""
    one = torch.ones((), dtype=torch.float64, device=products.device)
    # one division by n_i·n_j (commutative: a symmetric block stays exactly symmetric)
    return products / torch.outer(torch.where(a_norm > 0, a_norm, one), torch.where(b_norm > 0, b_norm, one))
