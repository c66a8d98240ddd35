"""What a stored cache file should be, and checked reads that name the file when it is not.

* :func:`fingerprint`: ``{"size": bytes, "hash": hex}`` of a stored file or directory, cheap for
  large files: BLAKE2b over the size, the first and last 64 KiB and 64 blocks of 4 KiB spread
  evenly between (files up to 1 MiB are hashed whole). A truncated, extended or overwritten file
  changes it; a change of a few bytes between two sampled blocks of a large file does not.
* :func:`load_npy`: ``np.load`` memory-mapped, after checking that the file's size matches the
  shape and dtype its header declares (:class:`CacheFileError` names the file, both sizes and the
  shape otherwise).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

EDGE_BYTES = 64 << 10
BLOCK_BYTES = 4 << 10
SAMPLED_BLOCKS = 64
WHOLE_FILE_BYTES = 1 << 20


class CacheFileError(ValueError):
    """A stored cache file cannot be read as what it claims (or was recorded) to be."""


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        if size <= WHOLE_FILE_BYTES:
            digest.update(f.read())
            return digest.hexdigest()
        offsets = [0, size - EDGE_BYTES]
        span = size - 2 * EDGE_BYTES - BLOCK_BYTES
        offsets += [EDGE_BYTES + span * i // (SAMPLED_BLOCKS - 1) for i in range(SAMPLED_BLOCKS)]
        for offset in sorted(offsets):
            f.seek(offset)
            digest.update(f.read(EDGE_BYTES if offset in (0, size - EDGE_BYTES) else BLOCK_BYTES))
    return digest.hexdigest()


def _files(path: Path) -> list[Path]:
    """The non-hidden files of a stored directory, recursively, in name order."""
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts))


def fingerprint(path: str | os.PathLike) -> dict:
    """``{"size": total bytes, "hash": 32 hex digits}`` of a stored file or directory."""
    path = Path(path)
    if not path.is_dir():
        size = path.stat().st_size
        return {"size": size, "hash": _file_digest(path, size)}
    digest, total = hashlib.blake2b(b"dir", digest_size=16), 0
    for child in _files(path):
        size = child.stat().st_size
        total += size
        digest.update(f"{child.relative_to(path).as_posix()}\0{size}\0{_file_digest(child, size)}\n".encode())
    return {"size": total, "hash": digest.hexdigest()}


def mismatch(path: str | os.PathLike, recorded: dict) -> str | None:
    """Why ``path`` no longer matches its ``recorded`` fingerprint (``None`` when it does)."""
    path = Path(path)
    if not path.exists():
        return f"{path}: missing (recorded {recorded['size']} bytes)"
    now = fingerprint(path)
    if now == {"size": recorded["size"], "hash": recorded["hash"]}:
        return None
    return (f"{path}: changed since it was written: recorded {recorded['size']} bytes, hash {recorded['hash']}; "
            f"now {now['size']} bytes, hash {now['hash']}")


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """The ``.npy`` file at ``path``, memory-mapped (``allow_pickle=False``); :class:`CacheFileError`
    naming the file, its expected and actual size and the declared shape if they disagree."""
    path = Path(path)
    actual = path.stat().st_size
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _fortran, dtype = read_header(f)
            header_bytes = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        raise CacheFileError(f"{path}: not a valid .npy file ({actual} bytes): {e}") from e
    expected = header_bytes + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if actual != expected:
        raise CacheFileError(f"{path}: {actual} bytes on disk, expected {expected} for a {dtype} array of shape "
                             f"{shape} ({'truncated' if actual < expected else 'trailing data'}); "
                             "rematerialize the asset that wrote it")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def fingerprint_metadata(path: str | os.PathLike) -> dict:
    """The fingerprint of ``path`` as materialization metadata: ``content_size`` (bytes),
    ``content_hash`` (see :func:`fingerprint`)."""
    found = fingerprint(path)
    return {"content_size": found["size"], "content_hash": found["hash"]}
