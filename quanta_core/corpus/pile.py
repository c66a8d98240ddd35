"""Stream documents from a Pile-format file: ``.jsonl.zst``, one JSON object per line with
``text`` (str) and ``meta.pile_set_name`` (str). Plain (uncompressed) JSONL is read too, as the
Pile's own tools write both; the format is told by the content (zstd's magic number), not the name.

Memory stays constant whatever the file size: the file is decompressed in 1 MiB chunks and
split into lines as it goes. Bad input raises :class:`PileFormatError` naming file and line; a
file without a single document (0 bytes, an empty zstd frame, blank lines only) is bad input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zstandard

from quanta_core.atomic import atomic_path

CHUNK_BYTES = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class PileFormatError(ValueError):
    """The corpus file is not valid Pile format (message names the file and line)."""


@dataclass(frozen=True)
class PileDocument:
    text: str
    pile_set_name: str
    line: int  # 1-based line number in the decompressed file


def _decompressed_chunks(path: Path) -> Iterator[bytes]:
    """Decompress a (possibly multi-frame) zstd file chunk by chunk; fail on truncation."""
    dctx = zstandard.ZstdDecompressor()
    with open(path, "rb") as f:
        obj, frame_has_data = dctx.decompressobj(), False
        while chunk := f.read(CHUNK_BYTES):
            while chunk:
                frame_has_data = True
                try:
                    out = obj.decompress(chunk)
                except zstandard.ZstdError as e:
                    raise PileFormatError(f"{path}: corrupt zstd data ({e})") from e
                if out:
                    yield out
                if obj.eof:
                    chunk = obj.unused_data
                    obj, frame_has_data = dctx.decompressobj(), False
                else:
                    chunk = b""
        if frame_has_data and not obj.eof:
            raise PileFormatError(f"{path}: truncated zstd file (the last frame is incomplete)")


def _plain_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            yield chunk


def _chunks(path: Path) -> Iterator[bytes]:
    """The file's JSONL bytes: zstd-decompressed, or as is when it starts like plain JSONL."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == ZSTD_MAGIC:
        return _decompressed_chunks(path)
    if head[:1].strip() in (b"{", b""):  # a JSON object or leading blank lines: plain JSONL
        return _plain_chunks(path)
    raise PileFormatError(f"{path}: expected zstd-compressed JSONL (.jsonl.zst) or plain JSONL, "
                          f"but the file starts with bytes {head.hex()}")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    buf, line_no = b"", 0
    for chunk in _chunks(path):
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for line in complete:
            line_no += 1
            yield line_no, line
    if buf:
        yield line_no + 1, buf


def _parse(path: Path, line_no: int, raw: bytes) -> PileDocument:
    where = f"{path}, line {line_no}"
    try:
        text_line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PileFormatError(f"{where}: invalid UTF-8 at byte {e.start}") from e
    try:
        record = json.loads(text_line)
    except json.JSONDecodeError as e:
        raise PileFormatError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    if not isinstance(record, dict):
        raise PileFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "text" not in record:
        raise PileFormatError(f"{where}: record has no 'text' field (keys: {sorted(record)})")
    text = record["text"]
    if not isinstance(text, str):
        raise PileFormatError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    meta = record.get("meta") or {}
    set_name = meta.get("pile_set_name", "") if isinstance(meta, dict) else ""
    return PileDocument(text=text, pile_set_name=str(set_name), line=line_no)


def read_pile(path: str | os.PathLike, num_documents: int | None = None) -> Iterator[PileDocument]:
    """Yield the first ``num_documents`` documents (all when ``None``) of a ``.jsonl.zst`` (or
    plain ``.jsonl``) file.

    Blank lines are skipped (they are not documents). Empty ``text`` is a valid, empty document.
    A file with no document at all raises :class:`PileFormatError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Pile file not found: {path}")
    if num_documents is not None and num_documents <= 0:
        return
    if path.stat().st_size == 0:
        raise PileFormatError(f"{path}: empty file (0 bytes), no documents")
    count = 0
    for line_no, raw in _lines(path):
        if not raw.strip():
            continue
        yield _parse(path, line_no, raw)
        count += 1
        if num_documents is not None and count >= num_documents:
            return
    if count == 0:
        raise PileFormatError(f"{path}: no documents ({path.stat().st_size} bytes, nothing but an empty "
                              "zstd frame or blank lines)")


def write_pile(path: str | os.PathLike, documents: list[tuple[str, dict]], level: int = 10) -> Path:
    """Write ``(text, meta)`` pairs as a Pile-format ``.jsonl.zst`` file, atomically."""
    with atomic_path(path, ".zst") as tmp:
        cctx = zstandard.ZstdCompressor(level=level)
        with open(tmp, "wb") as raw, cctx.stream_writer(raw) as out:
            for text, meta in documents:
                out.write(json.dumps({"text": text, "meta": meta}, ensure_ascii=False).encode() + b"\n")
    return Path(path)
