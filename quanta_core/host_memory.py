"""Memory facts without torch: the host's figures from Linux's /proc (bytes), the default budget
on a host, and the check that names what does not fit. The device-side memory (CUDA, the plan of
``exact``) is :mod:`quanta_core.similarity.memory`."""

from __future__ import annotations

GIB = 1 << 30
UNKNOWN_AVAILABLE_BYTES = 8 * GIB  # assumed where /proc/meminfo cannot be read
HOST_BUDGET_FRACTION = 0.5  # of available RAM: a CPU host is often shared


def proc_field_bytes(path: str, field: str) -> int | None:
    """The ``field`` line of a /proc file in kB (``MemAvailable`` of /proc/meminfo, ``VmHWM`` of
    /proc/self/status), as bytes; None where the file or the line is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def available_bytes() -> int | None:
    """Memory available to new work (MemAvailable), bytes; None where unknown."""
    return proc_field_bytes("/proc/meminfo", "MemAvailable")


def process_peak_bytes() -> int | None:
    """This process's peak resident memory (VmHWM), bytes; None where unknown."""
    return proc_field_bytes("/proc/self/status", "VmHWM")


def host_free_bytes() -> int:
    """:func:`available_bytes`, or :data:`UNKNOWN_AVAILABLE_BYTES` where unknown."""
    available = available_bytes()
    return UNKNOWN_AVAILABLE_BYTES if available is None else available


def host_budget_bytes() -> int:
    """The default memory budget of work on the host: 50 % of available RAM."""
    return int(host_free_bytes() * HOST_BUDGET_FRACTION)


def check_fits(parts: dict[str, int], budget_bytes: int, what: str, hint: str,
               limit_name: str = "the memory budget") -> None:
    """``MemoryError`` naming the parts, their sum and the limit when they exceed ``budget_bytes``."""
    need = sum(parts.values())
    if need > budget_bytes:
        detail = ", ".join(f"{k.replace('_', ' ')} {format_bytes(v)}" for k, v in parts.items())
        raise MemoryError(f"{what} needs {format_bytes(need)} ({detail}), over {limit_name} of "
                          f"{format_bytes(budget_bytes)}; {hint}")


def format_bytes(n: int) -> str:
    """``"1.25 GiB"``, or MiB below 0.1 GiB."""
    return f"{n / GIB:.2f} GiB" if n >= GIB // 10 else f"{n / (1 << 20):.2f} MiB"
