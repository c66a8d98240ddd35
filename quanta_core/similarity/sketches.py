"""Seeded sparse random projections of gradients (the ``projected`` method), one interface:
``Sketch(num_parameters, dim, seed, device, kind).apply(g)`` maps float32 rows ``[n, P]`` to
float64 rows ``[n, dim]`` whose dot products estimate those of ``g``.

``countsketch``
    Each coordinate goes to one of ``dim`` buckets with a random sign (Charikar, Chen &
    Farach-Colton 2002). The error of a cosine of unit vectors is about ``sqrt((1 + cos²) / dim)``.
``sjlt`` / ``sjlt-<s>``
    A sparse Johnson–Lindenstrauss transform (Kane & Nelson 2014, block construction): ``s``
    nonzeros ``±1/√s`` per coordinate, one in each of ``s`` blocks of ``dim / s`` rows — the mean
    of ``s`` independent CountSketches of ``dim / s``. Same variance as CountSketch for the same
    ``dim``, lighter tails; ``s`` times the scatter work. ``sjlt`` is ``s = 4``; ``sjlt-1`` is
    ``countsketch`` exactly.

The tables (bucket int64 and sign float32 per coordinate and nonzero, ``12 · s · P`` bytes) are
generated on the CPU from ``seed`` in blocks of 2^20 coordinates, so they are device-independent.
docs/similarity.md ("Projection at scale") has the measured errors and speeds.
"""

from __future__ import annotations

import math

import torch

from quanta_core.host_memory import check_fits
from quanta_core.similarity.memory import free_memory_bytes

KINDS = ("countsketch", "sjlt")
MAX_DIM = 1 << 18
DEFAULT_SJLT_NONZEROS = 4
_GEN_BLOCK = 1 << 20  # coordinates generated per call (part of the seeded stream: do not change)
_SKETCH_STEP = 1 << 22  # columns scattered per index_add_


def parse_kind(kind: str) -> int:
    """Nonzeros per coordinate ``s`` of a projection ``kind`` (``countsketch`` → 1), or a ValueError."""
    if kind == "countsketch":
        return 1
    if kind == "sjlt":
        return DEFAULT_SJLT_NONZEROS
    if kind.startswith("sjlt-") and kind[5:].isdigit() and int(kind[5:]) >= 1:
        return int(kind[5:])
    raise ValueError(f"projection must be 'countsketch', 'sjlt' or 'sjlt-<s>' (s ≥ 1 nonzeros per coordinate), "
                     f"got {kind!r}")


def check_dim(dim: int, nonzeros: int = 1) -> int:
    """``dim`` as an int if 1 ≤ dim ≤ 2^18 and divisible by ``nonzeros``, else a ValueError."""
    if isinstance(dim, bool) or int(dim) != dim or not 1 <= dim <= MAX_DIM:
        raise ValueError(f"projection_dim must be an integer in [1, {MAX_DIM}] (2^18), got {dim!r}")
    if dim % nonzeros:
        raise ValueError(f"projection_dim {dim} must be divisible by the {nonzeros} nonzeros of the sjlt projection")
    return int(dim)


def countsketch(num_parameters: int, dim: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded sparse projection: bucket (int64 ``[P]``, in [0, dim)) and sign (float32 ``[P]``,
    ±1) of every coordinate, generated on the CPU in blocks of 2^20 so it is device-independent."""
    return _tables(num_parameters, dim, 1, torch.Generator().manual_seed(int(seed)), device)[0]


def _tables(num_parameters: int, dim: int, nonzeros: int, gen: torch.Generator, device) -> list:
    """``nonzeros`` (bucket, sign) pairs, bucket ``j`` in ``[j·dim/s, (j+1)·dim/s)``; drawn from ``gen``
    block by block, then nonzero by nonzero (``nonzeros = 1``: today's CountSketch stream)."""
    width = dim // nonzeros
    parts = [([], []) for _ in range(nonzeros)]
    for a in range(0, num_parameters, _GEN_BLOCK):
        n = min(_GEN_BLOCK, num_parameters - a)
        for j, (buckets, signs) in enumerate(parts):
            buckets.append(torch.randint(0, width, (n,), generator=gen) + j * width)
            signs.append(torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1)
    return [(torch.cat(b).to(device), torch.cat(s).to(device)) for b, s in parts]


def sketch(g: torch.Tensor, buckets: torch.Tensor, signs: torch.Tensor, dim: int,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """CountSketch of the rows of ``g`` (float32 ``[n, P]``) → float64 ``[n, dim]`` (added into ``out``
    when given)."""
    part = torch.zeros(g.shape[0], dim, dtype=torch.float64, device=g.device) if out is None else out
    for a in range(0, g.shape[1], _SKETCH_STEP):
        sl = slice(a, a + _SKETCH_STEP)
        part.index_add_(1, buckets[sl], (g[:, sl] * signs[sl]).double())
    return part


class Sketch:
    """A seeded projection of ``num_parameters`` coordinates to ``dim`` (see the module docstring).

    ``kind``: ``countsketch`` | ``sjlt`` | ``sjlt-<s>``. ``apply(g)``: float32 ``[n, P]`` on
    ``device`` → float64 ``[n, dim]``, with ``E[⟨apply(x), apply(y)⟩] = ⟨x, y⟩``.
    """

    def __init__(self, num_parameters: int, dim: int, seed: int, device: torch.device, kind: str = "countsketch"):
        self.kind, self.nonzeros = kind, parse_kind(kind)
        self.dim, self.num_parameters, self.seed = check_dim(dim, self.nonzeros), int(num_parameters), int(seed)
        if self.nonzeros > 1:  # the tables must fit next to the gradients
            check_fits({"projection_tables": self.nonzeros * self.num_parameters * 12},
                       free_memory_bytes(torch.device(device)), f"the {kind} projection",
                       "use fewer nonzeros (sjlt-<s>) or countsketch", limit_name="the free memory")
        gen = torch.Generator().manual_seed(self.seed)
        self.tables = _tables(self.num_parameters, self.dim, self.nonzeros, gen, device)

    @property
    def table_bytes(self) -> int:
        return sum(b.numel() * b.element_size() + s.numel() * s.element_size() for b, s in self.tables)

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """Projection of the rows of ``g`` (float32 ``[n, P]``) → float64 ``[n, dim]``."""
        if g.ndim != 2 or g.shape[1] != self.num_parameters:
            raise ValueError(f"the sketch takes rows of {self.num_parameters} coordinates, got shape {tuple(g.shape)}")
        out = torch.zeros(g.shape[0], self.dim, dtype=torch.float64, device=g.device)
        for buckets, signs in self.tables:
            sketch(g, buckets, signs, self.dim, out)
        if self.nonzeros > 1:
            out *= 1 / math.sqrt(self.nonzeros)
        return out
