"""Memory of a similarity run on its device: the free memory, the default budget, the peak reached,
the plan of ``exact``'s resident and streamed gradient blocks that fits a budget, and the bytes of
what a run keeps besides. Host-only facts (``GIB``, ``check_fits``) are :mod:`quanta_core.host_memory`."""

from __future__ import annotations

import ctypes
import math
import resource
from dataclasses import dataclass

import torch

from quanta_core.host_memory import HOST_BUDGET_FRACTION, host_free_bytes, process_peak_bytes
from quanta_core.similarity.knn import KnnSink
from quanta_core.similarity.tiles import StoredRows, tile_bytes


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device``: ``torch.cuda.mem_get_info`` or ``MemAvailable`` of /proc/meminfo."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return host_free_bytes()


def default_memory_budget(device: torch.device) -> int:
    """85 % of free GPU memory, or 50 % of available RAM on a CPU (often a shared machine)."""
    return int(free_memory_bytes(device) * (0.85 if device.type == "cuda" else HOST_BUDGET_FRACTION))


class PeakMemory:
    """Peak memory during a computation: CUDA's max allocated, or the process's peak RSS (VmHWM,
    reset through /proc/self/clear_refs where allowed)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass

    def read(self) -> int:
        """Bytes."""
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        peak = process_peak_bytes()
        if peak is not None:
            return peak
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


@dataclass
class MemoryPlan:
    """How ``exact`` uses its memory budget. Bytes count gradient storage only: the resident
    block, the staging block that streamed gradients are gathered in before each Gram product,
    and (float16) the float32 batch buffer; the activations of one batch, about
    ``batch_tokens × 80 × hidden × layers`` bytes, come on top."""

    tokens: int
    budget_bytes: int
    resident_tokens: int
    resident_dtype: str
    batch_size: int
    stream_tokens: int  # staging block; 0 when everything is resident
    blocks: int
    gradient_computations: int

    @property
    def gradient_computations_per_token(self) -> float:
        return self.gradient_computations / max(self.tokens, 1)


def plan_memory(
    num_tokens: int, num_parameters: int, budget_bytes: int, *, resident_dtype: str = "auto",
    max_batch: int = 32, max_stream: int = 128,
) -> MemoryPlan:
    """Resident block, staging block and batch sizes for ``num_tokens`` gradients of
    ``num_parameters`` elements within ``budget_bytes``.

    All resident in float32 when they fit (``auto``/``float32``); else float16 (``auto``/
    ``float16``: 2 bytes per element plus a float32 batch buffer) or float32 blocks. Streaming
    gets at most an eighth of the budget (≤ ``max_stream`` tokens staged). Block k of
    ``ceil(S / r)`` is computed ``k + 1`` times.
    """
    if resident_dtype not in ("auto", "float32", "float16"):
        raise ValueError(f"resident_dtype must be auto, float32 or float16, got {resident_dtype!r}")
    s, p = int(num_tokens), int(num_parameters)
    if resident_dtype in ("auto", "float32") and s * p * 4 <= budget_bytes:
        dtype, batch, stream, resident = "float32", max(1, min(max_batch, s)), 0, s
    else:
        dtype = "float32" if resident_dtype == "float32" else "float16"
        item = 4 if dtype == "float32" else 2
        buffer_item = 0 if dtype == "float32" else 4  # float32 gradients are computed straight into place
        batch = int(max(1, min(max_batch, s, budget_bytes // 16 // (p * max(buffer_item, item)))))
        stream = int(max(batch, min(max_stream, s, budget_bytes // 8 // (p * item))))
        rest = budget_bytes - batch * p * buffer_item
        if s * p * item <= rest:  # everything fits (float16 asked for): nothing streams
            stream, resident = 0, s
        else:
            resident = int(max(1, min(s, (rest - stream * p * item) // (p * item))))
    blocks = math.ceil(s / resident)
    computations = sum(min(resident, s - k * resident) * (k + 1) for k in range(blocks))
    return MemoryPlan(s, int(budget_bytes), resident, dtype, batch, stream if blocks > 1 else 0, blocks, computations)


def budget_for_resident(num_tokens: int, num_parameters: int, resident_tokens: int, resident_dtype: str, **kw) -> int:
    """The smallest budget whose :func:`plan_memory` keeps ``resident_tokens`` resident (tests, benchmarks)."""
    lo, hi = 1, (num_tokens + 512) * num_parameters * 8
    while lo < hi:
        mid = (lo + hi) // 2
        plan = plan_memory(num_tokens, num_parameters, mid, resident_dtype=resident_dtype, **kw)
        if plan.resident_tokens >= resident_tokens:
            hi = mid
        else:
            lo = mid + 1
    return lo


class ReusedHeap:
    """Inside: glibc's malloc keeps freed memory for reuse instead of returning it to the kernel
    (``mallopt``: no ``mmap`` for large blocks, no trimming), so the many large temporaries of
    the per-token passes (activations, Gram chunks: MBs each, thousands of times) are not page-
    faulted and zeroed afresh every time (measured: ~7 % of the gradient time, half of the CPU
    Gram's). On exit the defaults return and the free memory goes back (``malloc_trim``). A no-op
    where glibc is not the allocator."""

    _M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4

    def __init__(self, enabled: bool = True):
        self.libc = None
        if enabled:
            try:
                libc = ctypes.CDLL("libc.so.6")
                self.libc = libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
            except OSError:
                self.libc = None

    def __enter__(self):
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_MAX, 0)
            self.libc.mallopt(self._M_TRIM_THRESHOLD, 1 << 30)
        return self

    def __exit__(self, *exc):
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_MAX, 65536)  # glibc's default
            self.libc.mallopt(self._M_TRIM_THRESHOLD, 128 * 1024)
            self.libc.malloc_trim(0)



def result_bytes(num_tokens: int, neighbors: int, dim: int | None = None, row_dtype: str = "float32",
                 tile: int = 2048) -> dict[str, int]:
    """Memory (bytes) of what a similarity run keeps besides ``exact``'s gradient plan, by part:
    ``neighbors == 0``: the dense matrix (float64 ``[S, S]`` while built, float32 copy returned);
    ``neighbors > 0``: the kNN sink (:class:`quanta_core.similarity.knn.KnnSink`); ``dim`` (``projected``):
    the stored projected rows (float64 ``[S, dim]`` for the dense matrix) and (kNN) one Gram tile."""
    s = int(num_tokens)
    if neighbors:
        parts = {"knn": KnnSink.bytes_needed(s, neighbors)}
        if dim:
            parts["projected_rows"] = StoredRows.bytes_needed(s, dim, row_dtype)
            parts["gram_tile"] = tile_bytes(min(tile, s), dim)
    else:
        parts = {"dense_matrix": s * s * 12}
        if dim:
            parts["projected_rows"] = s * int(dim) * 8
    return parts

