"""Loaders: checksums, corruption/truncation errors naming the file, download path, views."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

from decaynet import _data as data
from memdyn import ConfigError, DataError, epoch_order

SHARED = Path("/work/shared/data")
if not SHARED.exists():
    SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not (SHARED / "mnist").exists(), reason="shared data absent")


def _labels_copy(tmp_path: Path, mutate=None) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.FILES.values():
        shutil.copy(SHARED / "mnist" / name, folder / name)
    target = folder / "t10k-labels-idx1-ubyte.gz"
    if mutate is not None:
        target.write_bytes(mutate(target.read_bytes()))
    return target


@needs_data
def test_packaged_table_matches_shared_table_and_real_contents():
    shared = {}
    for line in (SHARED / "SHA256SUMS.txt").read_text().splitlines():
        _, sha, size, path = line.split()
        shared[path] = (sha, int(size))
    assert data.checksum_table() == shared
    raw = gzip.decompress((SHARED / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == shared["mnist/t10k-labels-idx1-ubyte.gz"][0]


@needs_data
def test_real_mnist_known_facts():
    train, test = data.load("mnist", SHARED)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    # The first ten MNIST test labels and the training pixel mean 0.1307 are well known.
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(train.images.mean() / 255 - 0.1307) < 1e-4
    assert np.bincount(train.labels).tolist()[:2] == [5923, 6742]


@needs_data
def test_fashion_known_mean_and_half_normalisation():
    train, _ = data.load("fashion_mnist", SHARED)
    assert abs(train.images.mean() / 255 - 0.2860) < 1e-3
    xs = data.as_sequences(train.images[:100], normalisation="half")
    assert xs.min() >= -1 and xs.max() <= 1 and xs.min() == -1
    np.testing.assert_allclose(xs, train.images[:100] / 127.5 - 1, atol=1e-6)


@needs_data
def test_corrupted_contents_raise_naming_the_file(tmp_path):
    def flip(gz):
        raw = bytearray(gzip.decompress(gz))
        raw[-1] ^= 1
        return gzip.compress(bytes(raw))

    target = _labels_copy(tmp_path, flip)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        data.load("mnist", tmp_path)
    assert str(target) in _message(lambda: data.load("mnist", tmp_path))


@needs_data
def test_truncated_file_raises_naming_the_file(tmp_path):
    target = _labels_copy(tmp_path, lambda gz: gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        data.load("mnist", tmp_path)
    # Truncated but validly compressed contents: caught by the size check.
    target.write_bytes(
        gzip.compress(gzip.decompress((SHARED / "mnist" / target.name).read_bytes())[:-5])
    )
    with pytest.raises(ValueError, match="t10k-labels.*truncated"):
        data.load("mnist", tmp_path)


def _uncompressed_copy(tmp_path: Path) -> Path:
    """mnist/ with every file decompressed (no `.gz` left); returns the test labels' path."""
    folder = tmp_path / "mnist"
    folder.mkdir(parents=True)
    for name in data.FILES.values():
        raw = gzip.decompress((SHARED / "mnist" / name).read_bytes())
        (folder / name.removesuffix(".gz")).write_bytes(raw)
    return folder / "t10k-labels-idx1-ubyte"


@needs_data
def test_uncompressed_idx_files_are_accepted_and_verified(tmp_path):
    target = _uncompressed_copy(tmp_path)
    paths = data.locate("mnist", tmp_path)
    assert paths["test_labels"] == target and all(p.suffix != ".gz" for p in paths.values())
    train, test = data.load("mnist", tmp_path)
    reference = np.frombuffer(target.read_bytes(), np.uint8, offset=8)  # idx1 header: 8 bytes
    np.testing.assert_array_equal(test.labels, reference)
    assert train.images.shape == (60000, 28, 28)


@needs_data
def test_corrupted_or_truncated_uncompressed_file_is_a_data_error(tmp_path):
    target = _uncompressed_copy(tmp_path)
    good = target.read_bytes()
    flipped = bytearray(good)
    flipped[100] ^= 1
    target.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match=f"{target}: SHA-256.*corrupted.*delete it"):
        data.load("mnist", tmp_path)
    target.write_bytes(good[:-3])
    with pytest.raises(DataError, match=f"{target}: contents are 10005 bytes, expected 10008"):
        data.load("mnist", tmp_path)


@needs_data
def test_corrupted_deflate_stream_is_a_data_error(tmp_path):
    def scramble(gz):
        middle = bytearray(gz)
        middle[len(gz) // 2 : len(gz) // 2 + 64] = bytes(64)
        return bytes(middle)

    target = _labels_copy(tmp_path, scramble)
    with pytest.raises(DataError, match=f"{target}: "):
        data.load("mnist", tmp_path)


def test_incomplete_folder_and_bad_idx_are_data_errors(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match="no complete mnist/ folder.*t10k-labels-idx1-ubyte"):
        data.locate("mnist", tmp_path)
    with pytest.raises(DataError, match="x.idx: truncated"):
        data.parse_idx(b"\x00\x00", "x.idx")
    with pytest.raises(DataError, match="no checksum"):
        data.read_verified(tmp_path / "mnist" / "t10k-labels-idx1-ubyte", "mnist/nothing.gz")
    with pytest.raises(DataError, match="missing.gz: cannot read"):
        data.read_verified(tmp_path / "missing.gz", "mnist/t10k-labels-idx1-ubyte.gz")


def _message(fn) -> str:
    with pytest.raises(ValueError) as info:
        fn()
    return str(info.value)


def test_parse_idx_synthetic_and_bad_headers():
    raw = struct.pack(">IIII", 0x803, 2, 3, 4) + bytes(range(24))
    np.testing.assert_array_equal(data.parse_idx(raw, "x"), np.arange(24).reshape(2, 3, 4))
    labels = struct.pack(">II", 0x801, 3) + bytes([1, 2, 3])
    assert data.parse_idx(labels, "y").tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="bad.idx: bad idx magic"):
        data.parse_idx(struct.pack(">II", 0x802, 3) + bytes(3), "bad.idx")
    with pytest.raises(ValueError, match="short.idx: idx size"):
        data.parse_idx(raw[:-1], "short.idx")


@needs_data
def test_download_path_with_file_urls(tmp_path, monkeypatch):
    monkeypatch.delenv("MEMDYN_DATA", raising=False)
    monkeypatch.setenv("MEMDYN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_candidate_dirs", lambda data_dir: [])
    mirror = (SHARED / "mnist").resolve().as_uri() + "/"
    monkeypatch.setitem(data.MIRRORS, "mnist", ("file:///nonexistent/", mirror))
    paths = data.locate("mnist")
    assert paths["test_labels"] == tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    assert all(p.exists() for p in paths.values())
    labels = data.read_verified(paths["test_labels"], "mnist/t10k-labels-idx1-ubyte.gz")
    assert labels[:3].tolist() == [7, 2, 1]
    # A mirror serving corrupted bytes is caught by the checksum.
    monkeypatch.setattr(data, "_fetch", lambda url: gzip.compress(b"\x00" * 100))
    monkeypatch.setenv("MEMDYN_CACHE", str(tmp_path / "cache2"))
    with pytest.raises(ValueError, match="mnist"):
        data.load("mnist")


def test_source_resolution_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="data_dir"):
        data.locate("mnist", tmp_path)
    monkeypatch.setenv("MEMDYN_DATA", str(tmp_path))
    with pytest.raises(ValueError, match=str(tmp_path)):
        data.locate("mnist")
    with pytest.raises(ValueError, match="dataset"):
        data.locate("cifar10")


def test_permutation_is_a_reproducible_bijection():
    p = data.permutation(7)
    assert sorted(p.tolist()) == list(range(784))
    np.testing.assert_array_equal(p, data.permutation(7))
    assert not np.array_equal(p, data.permutation(8))
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    pixel = data.as_sequences(images, view="pixel")
    permuted = data.as_sequences(images, view="permuted", perm=p)
    assert pixel.shape == permuted.shape == (3, 784, 1)
    for i in range(784):  # explicit loop reference: step i shows pixel p[i] in row-major order
        np.testing.assert_allclose(
            permuted[:, i, 0], images.reshape(3, -1)[:, p[i]] / 255, rtol=1e-6
        )
    np.testing.assert_allclose(data.as_sequences(images, view="row") * 255, images, rtol=1e-6)


def test_bad_view_inputs():
    images = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="view"):
        data.as_sequences(images, view="column")
    with pytest.raises(ValueError, match="normalisation"):
        data.as_sequences(images, normalisation="zscore")
    with pytest.raises(ValueError, match="uint8"):
        data.as_sequences(images / 255.0)  # already scaled: would be divided twice
    with pytest.raises(ValueError, match="perm"):
        data.as_sequences(images, view="permuted")
    with pytest.raises(ValueError, match="perm"):
        data.as_sequences(images, view="permuted", perm=np.zeros(784, int))
    with pytest.raises(ValueError, match="images"):
        data.as_sequences(np.zeros((28, 28)))


def test_epoch_order_partitions_the_data():
    order = np.asarray(epoch_order(jax.random.PRNGKey(0), 103, 10))
    assert order.shape == (10, 10)
    assert len(set(order.ravel().tolist())) == 100 and order.max() < 103
    again = np.asarray(epoch_order(jax.random.PRNGKey(0), 103, 10))
    np.testing.assert_array_equal(order, again)
    with pytest.raises(ConfigError, match="batch_size 10 exceeds the 5 examples"):
        epoch_order(jax.random.PRNGKey(0), 5, 10)
