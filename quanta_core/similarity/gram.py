"""Gram numerics: row norms, the scaled float16 store, ``A @ B.T`` accurate to float32 rounding,
and the guard that keeps CUDA matrix products in full float32."""

from __future__ import annotations

import torch

GRAM_CHUNK_ELEMENTS = 1 << 26  # elements converted / multiplied per Gram column chunk
GRAM_MAX_COLUMNS = 1 << 13  # float32 partial sums over at most 8,192 products, then float64
NORM_CHUNK = 1 << 16  # columns per float32 partial sum of squares
FP16_TARGET_MAX = 2.0**14  # scaled rows have max |x| in [2^13, 2^14]: far from fp16 overflow


def row_sq_norms(g: torch.Tensor) -> torch.Tensor:
    """Squared L2 norms of the rows of ``g`` (``[N, P]``), float64 ``[N]``: float32 (cascade)
    sums over column chunks of 65,536, accumulated in float64 (a plain float32 norm over 19M
    elements is off by ~1e-3 on CPU)."""
    sq = torch.zeros(g.shape[0], dtype=torch.float64, device=g.device)
    for a in range(0, g.shape[1], NORM_CHUNK):
        sq += g[:, a : a + NORM_CHUNK].float().square().sum(1).double()
    return sq


def normalize_(g: torch.Tensor) -> int:
    """Normalize the rows of ``g`` in place (float64 norms; eps 1e-12 as F.normalize); returns the
    number of all-zero rows (left zero, as the original's F.normalize leaves them)."""
    norms = row_sq_norms(g).sqrt()
    g.div_(norms.clamp_min(1e-12).to(g.dtype)[:, None])
    return int((norms == 0).sum())


def to_fp16_(src: torch.Tensor, dst: torch.Tensor, scales: torch.Tensor) -> None:
    """Store normalized float32 rows ``src`` (overwritten: used as scratch) as float16 in ``dst``,
    scaled before the cast by a power of two so each row's largest element is in [2^13, 2^14]
    (small elements stay out of fp16's subnormal range). ``scales`` (float64) receives, per row,
    the norm of the *stored* row (taken again after rounding), so the Gram of the stored rows
    divided by these has an exact unit diagonal and only the rounding of directions remains."""
    maxabs = torch.zeros(src.shape[0], dtype=torch.float32, device=src.device)
    for a in range(0, src.shape[1], NORM_CHUNK):
        maxabs = torch.maximum(maxabs, src[:, a : a + NORM_CHUNK].abs().amax(1))
    scale = torch.exp2(torch.floor(torch.log2(FP16_TARGET_MAX / maxabs.double().clamp_min(1e-30))))
    src.mul_(scale.float()[:, None])
    dst.copy_(src)
    scales.copy_(row_sq_norms(dst).sqrt().clamp_min(1e-300))


def gram(a: torch.Tensor, b: torch.Tensor, a_scale=None, b_scale=None) -> torch.Tensor:
    """``A @ B.T`` for row-normalized A ``[m, P]``, B ``[n, P]`` (float32, or scaled float16 with
    per-row ``scale``: the result is divided by them), float64 ``[m, n]``. Products are float32
    matrix multiplications (float16 chunks are converted first: tensor-core float16 products
    accumulate with truncation, a bias of ~5e-5 on a unit diagonal at 8,192 products) over
    column chunks of ≤ 8,192, summed in float64."""
    m, n, p = a.shape[0], b.shape[0], a.shape[1]
    out = torch.zeros(m, n, dtype=torch.float64, device=a.device)
    step = min(GRAM_MAX_COLUMNS, max(256, GRAM_CHUNK_ELEMENTS // max(m + n, 1)))
    same = a.data_ptr() == b.data_ptr() and a.shape == b.shape
    for c in range(0, p, step):
        x = a[:, c : c + step].float()
        y = x if same else b[:, c : c + step].float()
        out += torch.mm(x, y.T)
    if a_scale is not None:
        out /= a_scale[:, None]
    if b_scale is not None:
        out /= b_scale[None, :]
    return out


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
