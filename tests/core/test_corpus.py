"""The Pile reader: real format, constant-memory streaming, and a clear error for each bad input."""

import json

import pytest
import zstandard

from quanta_core.corpus.pile import ZSTD_MAGIC, PileFormatError, read_pile, write_pile


def _write_raw(path, lines: list[bytes], frames: int = 1):
    """Write raw JSONL bytes as zstd, optionally split into several frames (like pzstd output)."""
    data = b"".join(line + b"\n" for line in lines)
    cctx = zstandard.ZstdCompressor()
    step = max(1, len(data) // frames + 1)
    path.write_bytes(b"".join(cctx.compress(data[i : i + step]) for i in range(0, len(data), step)))
    return path


def _record(text, set_name="Pile-CC"):
    return json.dumps({"text": text, "meta": {"pile_set_name": set_name}}).encode()


def test_reads_documents_and_meta(tmp_path):
    documents = [("hello", {"pile_set_name": "Github"}), ("", {"pile_set_name": "ArXiv"})]
    path = write_pile(tmp_path / "a.jsonl.zst", documents)
    docs = list(read_pile(path))
    assert [(d.text, d.pile_set_name, d.line) for d in docs] == [("hello", "Github", 1), ("", "ArXiv", 2)]


def test_first_n_and_multiframe(tmp_path):
    lines = [_record(f"document {i} ünïcode") for i in range(500)]
    path = _write_raw(tmp_path / "m.jsonl.zst", lines, frames=7)
    docs = list(read_pile(path))
    assert [d.text for d in docs] == [f"document {i} ünïcode" for i in range(500)]
    assert [d.text for d in read_pile(path, 3)] == ["document 0 ünïcode", "document 1 ünïcode", "document 2 ünïcode"]


def test_stops_reading_after_n_documents(tmp_path):
    # a bad line after the first N documents is never reached: the reader streams, not slurps
    path = _write_raw(tmp_path / "s.jsonl.zst", [_record("a"), _record("b"), b"{not json"])
    assert [d.text for d in read_pile(path, 2)] == ["a", "b"]


def test_truncated_zst(tmp_path):
    path = _write_raw(tmp_path / "t.jsonl.zst", [_record("x" * 100 + str(i)) for i in range(2000)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PileFormatError, match=r"t\.jsonl\.zst.*truncated"):
        list(read_pile(path))


def test_corrupt_zst(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(ZSTD_MAGIC + b"this is not zstd at all" * 10)
    with pytest.raises(PileFormatError, match=r"c\.jsonl\.zst.*corrupt"):
        list(read_pile(path))


def test_neither_zstd_nor_jsonl_is_refused_as_such(tmp_path):
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(b"this is not zstd at all" * 10)
    with pytest.raises(PileFormatError, match=r"c\.jsonl\.zst: expected zstd-compressed JSONL"):
        list(read_pile(path))


@pytest.mark.parametrize("content", [b"", zstandard.ZstdCompressor().compress(b""), b"\n\n",
                                     zstandard.ZstdCompressor().compress(b"\n  \n")],
                         ids=["0 bytes", "empty zstd frame", "blank lines", "zstd of blank lines"])
def test_a_corpus_without_documents_is_an_error_naming_the_file(tmp_path, content):
    path = tmp_path / "empty.jsonl.zst"
    path.write_bytes(content)
    with pytest.raises(PileFormatError, match=r"empty\.jsonl\.zst.*no documents"):
        list(read_pile(path))
    assert list(read_pile(path, 0)) == []  # nothing asked, nothing read


def test_plain_jsonl_is_read_like_the_compressed_file(tmp_path):
    lines = [_record(f"document {i}", "Github") for i in range(5)]
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"".join(line + b"\n" for line in lines))
    compressed = _write_raw(tmp_path / "c.jsonl.zst", lines)
    assert list(read_pile(plain)) == list(read_pile(compressed))
    assert [d.text for d in read_pile(plain, 2)] == ["document 0", "document 1"]


def test_line_not_json(tmp_path):
    path = _write_raw(tmp_path / "j.jsonl.zst", [_record("ok"), b'{"text": "broken'])
    with pytest.raises(PileFormatError, match=r"j\.jsonl\.zst, line 2: not valid JSON"):
        list(read_pile(path))


def test_record_without_text(tmp_path):
    path = _write_raw(tmp_path / "n.jsonl.zst", [_record("ok"), _record("ok"), b'{"meta": {}}'])
    with pytest.raises(PileFormatError, match=r"line 3: record has no 'text' field"):
        list(read_pile(path))


def test_text_not_a_string(tmp_path):
    path = _write_raw(tmp_path / "n.jsonl.zst", [b'{"text": 42}'])
    with pytest.raises(PileFormatError, match=r"line 1: 'text' must be a string"):
        list(read_pile(path))


def test_invalid_utf8(tmp_path):
    path = _write_raw(tmp_path / "u.jsonl.zst", [_record("ok"), b'{"text": "bad \xff\xfe byte"}'])
    with pytest.raises(PileFormatError, match=r"u\.jsonl\.zst, line 2: invalid UTF-8 at byte 14"):
        list(read_pile(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl.zst"):
        list(read_pile(tmp_path / "nope.jsonl.zst"))


def test_failed_write_leaves_nothing(tmp_path):
    def documents():
        yield ("fine", {"pile_set_name": "x"})
        raise RuntimeError("interrupted")

    target = tmp_path / "w.jsonl.zst"
    with pytest.raises(RuntimeError):
        write_pile(target, documents())
    assert list(tmp_path.iterdir()) == []
