"""Float32 matrix products through oneDNN on x86 CPUs (the CPU's AVX-512 speed).

PyTorch sends CPU float32 matmuls to MKL, which on AMD processors takes its AVX2 code path
(measured on this project's Zen 5 EPYC: 86–92 GFLOP/s per core, against an AVX-512 FMA peak of
227); oneDNN, which PyTorch also ships, dispatches on the instruction set and runs its AVX-512
kernels: 190–210 GFLOP/s per core for the same products, IEEE float32 (float32 accumulation,
no reduced-precision math mode). On Intel CPUs the two are about equal.

``linear(x, w, b)`` = ``x @ w.T + b`` and :class:`OneDnnLinears` (the forward and input-gradient
products of ``nn.Linear`` modules) use oneDNN for CPU float32 tensors when it is available and
agrees with ``torch.mm`` on a probe; otherwise plain torch. ``QUANTA_ONEDNN=0`` turns it off.
"""

from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F
from torch import nn

from quanta_core.environment import env_value


@functools.cache
def available() -> bool:
    """oneDNN's float32 linear exists on this build and CPU and matches ``torch.mm`` (probe)."""
    if env_value("QUANTA_ONEDNN", "1") == "0" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 300, generator=gen), torch.randn(48, 300, generator=gen)
    try:
        got = torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    except RuntimeError:
        return False
    want = (a.double() @ b.double().T).float()
    return got.shape == want.shape and bool(((got - want).abs() <= 1e-4 * (1 + want.abs())).all())


def usable(*tensors: torch.Tensor) -> bool:
    """oneDNN is used for these tensors: all CPU float32, and no autograd graph to record."""
    if not available() or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors)):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T + b``: ``x`` ``[..., k]``, ``w`` ``[n, k]`` (any strides), ``b`` ``[n]`` → ``[..., n]``."""
    if not usable(x, w, *([] if b is None else [b])):
        return F.linear(x, w, b)
    flat = x.reshape(-1, x.shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(flat, w, b, "none", [], "")
    return out.reshape(*x.shape[:-1], w.shape[0])


def outer_sums_(go: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
    """``out[n] = go[n].T @ x[n]`` (``Σ_t go[n, t] ⊗ x[n, t]``): ``go`` ``[N, T, o]``, ``x``
    ``[N, T, i]``, ``out`` ``[N, o, i]`` (any strides, e.g. rows of a gradient store)."""
    if usable(go, x):
        for n in range(go.shape[0]):
            out[n].copy_(linear(go[n].T, x[n].T))
    else:  # a batched product into contiguous memory, then one copy: 2× faster than into strided rows
        out.copy_(torch.bmm(go.transpose(1, 2), x))


class _Linear(torch.autograd.Function):
    """``y = x @ w.T + b`` with ``dy/dx`` through :func:`linear`; ``w`` and ``b`` need no gradient."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(w)
        return linear(x, w, b)

    @staticmethod
    def backward(ctx, grad):
        (w,) = ctx.saved_tensors
        return linear(grad, w.T), None, None


class OneDnnLinears:
    """Inside ``with OneDnnLinears(modules):`` the ``nn.Linear`` modules among ``modules`` compute
    their forward and input-gradient products with oneDNN (module hooks keep working: only
    ``forward`` is replaced). A no-op where oneDNN is not usable or a weight needs a gradient."""

    def __init__(self, modules):
        self.modules = [m for m in modules if isinstance(m, nn.Linear)]

    def __enter__(self):
        for m in self.modules:
            params = [m.weight, *([] if m.bias is None else [m.bias])]
            if available() and not any(p.requires_grad for p in params) and usable(*params):
                m.forward = _bound(m)
        return self

    def __exit__(self, *exc):
        for m in self.modules:
            m.__dict__.pop("forward", None)


def _bound(module: nn.Linear):
    def forward(x):
        return _Linear.apply(x, module.weight, module.bias)

    return forward
