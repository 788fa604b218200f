"""MNIST and Fashion-MNIST from idx(.gz) files, SHA-256-verified, as sequences (App. C).

Each file may be gzipped (`train-images-idx3-ubyte.gz`, as the mirrors serve it) or uncompressed
(`train-images-idx3-ubyte`); where both are present the `.gz` is read. Every fault of a source
(missing, truncated, corrupted, malformed, undownloadable) is a `memdyn.DataError` (a
`ValueError`) naming the file and what to do.

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
import zlib
from pathlib import Path

import numpy as np
from jaxtyping import Float

from memdyn import ConfigError, DataError
from memdyn.internal import atomic_write_bytes, check_in, check_positive

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
_REPLACE = "delete it to re-download, or replace it with a good copy"


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
        raise DataError(f"{name}: truncated idx file ({len(raw)} bytes); {_REPLACE}")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic not in (_IMAGE_MAGIC, _LABEL_MAGIC):
        raise DataError(
            f"{name}: bad idx magic number {magic:#x} (want 0x803 or 0x801): not an idx file; "
            f"{_REPLACE}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated idx header; {_REPLACE}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(
            f"{name}: idx size {len(raw)} bytes, header {dims} implies {expected}; {_REPLACE}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_verified(path: str | os.PathLike, key: str) -> np.ndarray:
    """Read `path` (decompressing a `.gz`), check the contents' SHA-256 against the table entry
    `key` (named as the `.gz`, e.g. `"mnist/t10k-labels-idx1-ubyte.gz"`), parse."""
    path = Path(path)
    table = checksum_table()
    if key not in table:
        raise DataError(f"{path}: no checksum for {key!r}; known entries: {sorted(table)}")
    sha, size = table[key]
    try:
        stored = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err}); check the file, or {_REPLACE}") from err
    try:
        raw = gzip.decompress(stored) if path.suffix == ".gz" else stored
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path}: cannot decompress ({err}); truncated or corrupted: {_REPLACE}"
        ) from err
    if len(raw) != size:
        raise DataError(
            f"{path}: contents are {len(raw)} bytes, expected {size} (truncated?); {_REPLACE}"
        )
    if hashlib.sha256(raw).hexdigest() != sha:
        raise DataError(
            f"{path}: SHA-256 of the (decompressed) contents does not match {key}: corrupted; "
            f"{_REPLACE}"
        )
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
    raise DataError(
        f"could not download {dataset}/{filename} into {target.parent}: {'; '.join(errors)}; "
        "check the network, or place the files there, in --data-dir or in $MEMDYN_DATA"
    )


def _cache() -> Path:
    return Path(os.environ.get("MEMDYN_CACHE", Path.home() / ".cache" / "memdyn"))


def _complete(folder: Path) -> dict[str, Path] | None:
    """Each file as `.gz` or, failing that, uncompressed; `None` unless all four are there."""
    found = {}
    for k, name in FILES.items():
        for candidate in (folder / name, folder / name.removesuffix(".gz")):
            if candidate.is_file():
                found[k] = candidate
                break
        else:
            return None
    return found


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
            names = ", ".join(f"{n}[.gz]" for n in (f.removesuffix(".gz") for f in FILES.values()))
            raise DataError(
                f"data_dir {base} has no complete {dataset}/ folder: it needs {names}; "
                "point --data-dir or $MEMDYN_DATA at a folder that has them"
            )
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
            raise DataError(
                f"{paths[f'{part}_images']}, {paths[f'{part}_labels']}: images {images.shape} "
                f"vs labels {labels.shape} do not pair up; replace them with a matching pair"
            )
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
        raise DataError(f"images must have shape (n, height, width); got {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(
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
            raise ConfigError("perm is required for view='permuted'; pass permutation(seed)")
        perm = np.asarray(perm)
        if perm.shape != (h * w,) or not np.array_equal(np.sort(perm), np.arange(h * w)):
            raise ConfigError(
                f"perm must be a permutation of range({h * w}) (e.g. permutation(seed, {h * w}))"
            )
        x = x[:, perm]
    return x
