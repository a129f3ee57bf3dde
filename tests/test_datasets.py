"""fastbp.datasets: make_classification, and load_idx / load_mnist on IDX files written here."""
import gzip
import os
import struct

import numpy as np
import pytest

from fastbp.datasets import IDX_TYPES, load_idx, load_mnist, make_classification

CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
         np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array, code=None):
    """The IDX encoding of ``array``, written independently of fastbp.datasets."""
    array = np.asarray(array)
    code = CODES[array.dtype.newbyteorder("=")] if code is None else code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, data, gzipped=False):
    path.write_bytes(gzip.compress(data) if gzipped else data)
    return path


def sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.normal(scale=1e3, size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)


# ------------------------------------------------------------------------------ round trip

@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (2, 3), (2, 1, 3, 2)], ids=str)
@pytest.mark.parametrize("dtype", list(CODES), ids=lambda d: d.name)
def test_reads_every_type_and_rank(tmp_path, dtype, shape, gzipped):
    expected = sample(dtype, shape)
    path = write(tmp_path / "data.idx", idx_bytes(expected), gzipped)
    array = load_idx(path)
    assert array.dtype == dtype and array.dtype.isnative
    assert array.shape == shape
    assert array.flags.c_contiguous and array.flags.writeable
    np.testing.assert_array_equal(array, expected)


def test_type_codes_match_the_format():
    assert {code: dtype.str[1:] for code, dtype in IDX_TYPES.items()} == {
        0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}
    assert all(d.byteorder in "|>" for d in IDX_TYPES.values())  # big-endian on disk


def test_big_endian_values_are_decoded(tmp_path):
    # 0x0102 as a big-endian int16 is 258; 1.0 as a big-endian float32 is 3f 80 00 00.
    path = write(tmp_path / "x", bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    assert load_idx(path).tolist() == [258, -2]
    path = write(tmp_path / "y", bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0x80, 0, 0]))
    assert load_idx(path).tolist() == [1.0]


def test_gzip_is_detected_by_content_not_name(tmp_path):
    expected = sample("u1", (4, 3))
    np.testing.assert_array_equal(
        load_idx(write(tmp_path / "no-extension", idx_bytes(expected), gzipped=True)), expected)
    np.testing.assert_array_equal(
        load_idx(write(tmp_path / "fake.gz", idx_bytes(expected))), expected)


def test_empty_dimension_and_str_path(tmp_path):
    path = write(tmp_path / "empty", idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    assert load_idx(str(path)).shape == (0, 28, 28)


def test_mnist_sized_labels_file(tmp_path):
    labels = np.arange(60000, dtype=np.uint8) % 10
    path = write(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels), gzipped=True)
    np.testing.assert_array_equal(load_idx(path), labels)


# ---------------------------------------------------------------------------------- errors

GOOD = idx_bytes(np.arange(6, dtype=np.int16).reshape(2, 3))  # 4 + 8 header, 12 data bytes


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("data, message", [
    (b"", "shorter than the 4-byte IDX magic"),
    (b"\x00\x00\x08", "shorter than the 4-byte IDX magic"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x00", "starts with bytes 01 00"),
    (b"\x00\x07\x08\x01\x00\x00\x00\x00", "starts with bytes 00 07"),
    (b"\x00\x00\x0a\x01\x00\x00\x00\x00", "unknown IDX type code 0x0A"),
    (b"\x00\x00\x10\x01\x00\x00\x00\x00", "unknown IDX type code 0x10"),
    (b"\x00\x00\x08\x00\x05", "0 dimensions"),
    (GOOD[:10], "truncated IDX header: 2 dimensions need 8 bytes of sizes, the file has 6"),
    (GOOD[:-1], "truncated IDX data: shape (2, 3) of int16 needs 12 bytes after the 12-byte "
                "header, the file has 11"),
    (GOOD[:12], "truncated IDX data"),
    (GOOD + b"\x00", "1 unexpected byte after the IDX data"),
    (GOOD + bytes(1000), "1000 unexpected bytes after the IDX data"),
], ids=["empty", "short-magic", "nonzero-byte-0", "nonzero-byte-1", "type-0x0a", "type-0x10",
        "no-dims", "short-sizes", "one-byte-short", "no-data", "one-extra", "many-extra"])
def test_bad_files_raise_a_value_error_naming_the_file(tmp_path, data, message, gzipped):
    path = write(tmp_path / "bad-file.idx", data, gzipped)
    with pytest.raises(ValueError, match="bad-file.idx") as error:
        load_idx(path)
    assert message in str(error.value)


def test_huge_sizes_in_a_small_file_fail_without_allocating(tmp_path):
    data = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(8)
    for gzipped in (False, True):
        with pytest.raises(ValueError, match="truncated IDX data"):
            load_idx(write(tmp_path / f"huge{gzipped}", data, gzipped))


@pytest.mark.parametrize("cut", [3, 12, -9, -1])
def test_cut_gzip_stream_is_a_value_error(tmp_path, cut):
    compressed = gzip.compress(idx_bytes(sample("f8", (50, 7))))
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[:cut])
    with pytest.raises(ValueError, match="cut.gz.*gzip"):
        load_idx(path)


def test_corrupt_gzip_stream_is_a_value_error(tmp_path):
    compressed = bytearray(gzip.compress(idx_bytes(sample("i4", (40, 9)))))
    compressed[20:30] = bytes(10)
    path = tmp_path / "corrupt"
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match="corrupt.*gzip"):
        load_idx(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------ load_mnist

def write_mnist(folder, n_train=6, n_test=4, gzipped=True, dotted=False):
    rng = np.random.default_rng(1)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        parts[f"{prefix}-images-idx3-ubyte"] = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        parts[f"{prefix}-labels-idx1-ubyte"] = rng.integers(0, 10, n).astype(np.uint8)
    for stem, array in parts.items():
        name = (stem.replace("-idx", ".idx") if dotted else stem) + (".gz" if gzipped else "")
        write(folder / name, idx_bytes(array), gzipped)
    return parts


@pytest.mark.parametrize("gzipped, dotted", [(True, False), (False, False), (False, True)])
def test_load_mnist_flattens_and_scales(tmp_path, gzipped, dotted):
    parts = write_mnist(tmp_path, gzipped=gzipped, dotted=dotted)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (6, 784) and X_test.shape == (4, 784)
    assert X_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_allclose(X_train * 255, parts["train-images-idx3-ubyte"].reshape(6, -1),
                               rtol=1e-6)
    np.testing.assert_array_equal(y_test, parts["t10k-labels-idx1-ubyte"])


def test_load_mnist_names_what_is_missing(tmp_path):
    write_mnist(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_load_mnist_checks_counts_and_types(tmp_path):
    write_mnist(tmp_path, gzipped=False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="has 4 images but .* has 3 labels"):
        load_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.int32)))
    with pytest.raises(ValueError, match="expected 1-D unsigned bytes"):
        load_mnist(tmp_path)


def test_load_mnist_trains_a_model(tmp_path):
    import fastbp as fb
    write_mnist(tmp_path, n_train=64, n_test=16)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    model = fb.mlp([784, 16, 10], activation="relu", loss="cross_entropy", seed=0)
    model.fit(X_train, y_train, epochs=1, batch_size=16, optimizer=fb.SGD(lr=0.01))
    assert 0.0 <= model.evaluate(X_test, y_test)["accuracy"] <= 1.0


# ---------------------------------------------------------------------- make_classification

def test_make_classification_is_seeded_and_standardised():
    X, y = make_classification(500, 6, 4, seed=3)
    X2, y2 = make_classification(500, 6, 4, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(X.std(axis=0), 1, atol=1e-4)
    assert set(np.unique(y)) == {0, 1, 2, 3}
