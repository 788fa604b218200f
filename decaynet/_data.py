"""MNIST and Fashion-MNIST from idx(.gz) files, SHA-256-verified, as sequences (App. C).

Sources, first found wins: an explicit `data_dir`, `$MEMDYN_DATA`, a `shared/data` folder next to
the repository (`../shared/data` relative to the package's parent directory or to the CWD), else a
download from the standard public mirrors into `~/.cache/memdyn/<dataset>/`. Whatever the source,
the SHA-256 of the *decompressed* contents is checked against the packaged table
(`decaynet/SHA256SUMS.txt`); `.gz` bytes differ between mirrors, the contents do not.

Views: `"row"` (28 steps of 28 pixels, §6.1), `"pixel"` (784 steps of 1 pixel), `"permuted"`
(pixel view under a fixed permutation drawn with `numpy.random.default_rng(seed).permutation`).
Normalisation: `"none"` (pixels / 255, the paper's MNIST) or `"half"` ((x/255 - 0.5) / 0.5, the
paper's Fashion-MNIST).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np
from jaxtyping import Float

from memdyn import atomic_write_bytes, check_in, check_positive

DATASETS = ("mnist", "fashion_mnist")
VIEWS = ("row", "pixel", "permuted")
NORMALISATIONS = ("none", "half")
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion_mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}
DEFAULT_NORMALISATION = {"mnist": "none", "fashion_mnist": "half"}
_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801


def checksum_table() -> dict[str, tuple[str, int]]:
    """`"mnist/train-images-idx3-ubyte.gz" -> (sha256 of decompressed contents, size)`."""
    text = (Path(__file__).with_name("SHA256SUMS.txt")).read_text()
    table = {}
    for line in text.splitlines():
        if line.strip():
            _, contents_sha, size, path = line.split()
            table[path] = (contents_sha, int(size))
    return table


def parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Decode idx bytes (magic 0x803 images, 0x801 labels; big-endian dims) into uint8."""
    if len(raw) < 8:
        raise ValueError(f"{name}: truncated idx file ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic not in (_IMAGE_MAGIC, _LABEL_MAGIC):
        raise ValueError(f"{name}: bad idx magic number {magic:#x} (want 0x803 or 0x801)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated idx header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise ValueError(f"{name}: idx size {len(raw)} bytes, header {dims} implies {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_verified(path: str | os.PathLike, key: str) -> np.ndarray:
    """Decompress `path`, check its contents' SHA-256 against the table entry `key`, parse."""
    path = Path(path)
    sha, size = checksum_table()[key]
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: cannot decompress ({err}); truncated or corrupted?") from err
    if len(raw) != size:
        raise ValueError(
            f"{path}: decompressed size {len(raw)} bytes, expected {size} (truncated?)"
        )
    if hashlib.sha256(raw).hexdigest() != sha:
        raise ValueError(f"{path}: SHA-256 of decompressed contents does not match {key}")
    return parse_idx(raw, str(path))


def _candidate_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None and str(data_dir) != "":
        return [Path(data_dir)]
    dirs = []
    if os.environ.get("MEMDYN_DATA"):
        return [Path(os.environ["MEMDYN_DATA"])]
    repo = Path(__file__).resolve().parent.parent
    for base in (repo, Path.cwd()):
        for up in (base, *base.parents[:2]):
            dirs.append(up / ".." / "shared" / "data")
            dirs.append(up / "shared" / "data")
    return dirs


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def _download(dataset: str, filename: str, cache: Path) -> Path:
    target = cache / dataset / filename
    if target.exists():
        return target
    errors = []
    for mirror in MIRRORS[dataset]:
        try:
            atomic_write_bytes(target, _fetch(mirror + filename))
            return target
        except OSError as err:
            errors.append(f"{mirror}: {err}")
    raise ValueError(f"could not download {dataset}/{filename}: {'; '.join(errors)}")


def _cache() -> Path:
    return Path(os.environ.get("MEMDYN_CACHE", Path.home() / ".cache" / "memdyn"))


def _complete(folder: Path) -> dict[str, Path] | None:
    if all((folder / f).exists() for f in FILES.values()):
        return {k: folder / f for k, f in FILES.items()}
    return None


def find_local(dataset: str, data_dir: str | os.PathLike | None = None) -> dict[str, Path] | None:
    """Paths of the four files of `dataset` where a local source has them all — `data_dir`,
    `$MEMDYN_DATA`, a `shared/data` beside the repository, or the download cache — else `None`.
    Never downloads (for callers that must know before they start, e.g. a test's skip)."""
    check_in("dataset", dataset, DATASETS)
    for base in (*_candidate_dirs(data_dir), _cache()):
        found = _complete(base / dataset)
        if found is not None:
            return found
    return None


def locate(dataset: str, data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Paths of the four files of `dataset`, downloading into the cache if no source has them."""
    check_in("dataset", dataset, DATASETS)
    explicit = data_dir is not None and str(data_dir) != ""
    for base in _candidate_dirs(data_dir):
        found = _complete(base / dataset)
        if found is not None:
            return found
        if explicit or os.environ.get("MEMDYN_DATA"):
            raise ValueError(f"data_dir {base} has no complete {dataset}/ folder ({FILES})")
    return {k: _download(dataset, f, _cache()) for k, f in FILES.items()}


@dataclasses.dataclass(frozen=True)
class Split:
    """Images as uint8 `(n, 28, 28)` and integer labels `(n,)`."""

    images: np.ndarray
    labels: np.ndarray


def load(dataset: str, data_dir: str | os.PathLike | None = None) -> tuple[Split, Split]:
    """Train and test splits of `dataset`, every file SHA-256-verified."""
    paths = locate(dataset, data_dir)
    arrays = {k: read_verified(p, f"{dataset}/{FILES[k]}") for k, p in paths.items()}
    splits = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(f"{dataset} {part}: images {images.shape} vs labels {labels.shape}")
        splits.append(Split(images, labels.astype(np.int32)))
    return splits[0], splits[1]


def permutation(seed: int, size: int = 784) -> np.ndarray:
    """The fixed pixel permutation of the permuted view: `default_rng(seed).permutation(size)`."""
    check_positive("size", size)
    return np.random.default_rng(seed).permutation(size)


def as_sequences(
    images: np.ndarray,
    *,
    view: str = "row",
    normalisation: str = "none",
    perm: np.ndarray | None = None,
) -> Float[np.ndarray, "n time features"]:
    """uint8 images `(n, 28, 28)` -> float32 sequences `(n, time, features)` of the chosen view."""
    check_in("view", view, VIEWS)
    check_in("normalisation", normalisation, NORMALISATIONS)
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (n, height, width); got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(
            f"images must be raw uint8 pixels (the view divides by 255); got dtype {images.dtype}"
        )
    n, h, w = images.shape
    x = images.astype(np.float32) / 255.0
    if normalisation == "half":
        x = (x - 0.5) / 0.5
    if view == "row":
        return x
    x = x.reshape(n, h * w, 1)
    if view == "permuted":
        if perm is None:
            raise ValueError("perm is required for view='permuted'")
        perm = np.asarray(perm)
        if perm.shape != (h * w,) or not np.array_equal(np.sort(perm), np.arange(h * w)):
            raise ValueError(f"perm must be a permutation of range({h * w})")
        x = x[:, perm]
    return x
