"""The host's memory figures from Linux's /proc (bytes), without torch: what the memory checks and
the peak-memory metadata read."""

from __future__ import annotations


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
