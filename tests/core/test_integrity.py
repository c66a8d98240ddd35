"""Cache files: a failed read names the file with its expected and actual size; fingerprints notice changes."""

import numpy as np
import pandas as pd
import pytest

from quanta_core import store
from quanta_core.integrity import CacheFileError, fingerprint, mismatch


def test_truncated_npy_names_the_file_and_both_sizes(tmp_path):
    written = store.write_value(tmp_path / "quanta_similarity" / "matrix", np.ones((300, 200), dtype=np.float32))
    size = written.stat().st_size
    with open(written, "r+b") as f:
        f.truncate(size // 2)
    for read in (lambda: store.read_value(written), lambda: store.read_value(tmp_path / "quanta_similarity")):
        with pytest.raises(CacheFileError) as caught:
            read()
        message = str(caught.value)
        assert str(written) in message and f"{size // 2} bytes on disk, expected {size}" in message
        assert "(300, 200)" in message and "truncated" in message


def test_loss_table_with_trailing_data_names_the_file(tmp_path):
    written = store.write_value(tmp_path / "pile_losses", np.zeros(100, dtype=np.float32))
    with open(written, "ab") as f:
        f.write(b"junk")
    with pytest.raises(CacheFileError, match=rf"{written}: .*trailing data"):
        store.open_table(written, "step1")


def test_npy_with_a_broken_header_names_the_file(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(CacheFileError, match=rf"{path}: not a valid \.npy file \(14 bytes\)"):
        store.read_value(path)


def test_corrupt_parquet_names_the_file(tmp_path):
    written = store.write_value(tmp_path / "documents", pd.DataFrame({"a": range(1000)}))
    data = written.read_bytes()
    written.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheFileError, match=rf"{written}: cannot read this \.parquet file \({len(data) // 2} bytes\)"):
        store.read_value(written)


@pytest.mark.parametrize("size", [1000, 5 << 20])
def test_fingerprint_notices_truncation_and_overwrite(tmp_path, size):
    path = tmp_path / "m.bin"
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    recorded = fingerprint(path)
    assert recorded["size"] == size and mismatch(path, recorded) is None
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # same size, last byte changed
    assert "changed since it was written" in mismatch(path, recorded)
    path.write_bytes(data[: size // 2])
    assert f"now {size // 2} bytes" in mismatch(path, recorded)
    path.unlink()
    assert "missing" in mismatch(path, recorded)


def test_directory_fingerprint_covers_every_file_but_temporaries(tmp_path):
    stored = store.write_value(tmp_path / "corpus", {"ids": np.arange(10), "offsets": np.arange(3)})
    recorded = fingerprint(stored)
    (stored / ".ids.npy.123.tmp").write_bytes(b"in progress")  # a temporary file is not content
    assert mismatch(stored, recorded) is None
    np.save(stored / "offsets.npy", np.arange(1, 4))
    assert mismatch(stored, recorded) is not None
