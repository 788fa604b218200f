"""Atomic, pickle-free, integrity-checked checkpoints of pytrees with their metadata.

One file holds everything, written in a single atomic replace: a magic line, the SHA-256 of the
payload, then the payload: a length-prefixed JSON header (the caller's metadata and the key path,
shape and dtype of every array leaf) followed by the array leaves (`eqx.tree_serialise_leaves`).
A process killed at any moment leaves either the previous checkpoint or the new one, never leaves
from one save with metadata from another. On load the hash is checked before anything is
deserialised, so any changed byte or truncation is an error naming the file, and the leaves are
checked against the template's structure, shapes and dtypes. `path.json` is a human-readable copy
of the metadata, written after the checkpoint; it is never read back, but its presence without
the checkpoint tells `memdyn.train_epochs` that a checkpoint was lost.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path
from typing import Any, TypeVar

import equinox as eqx
import jax
import numpy as np

from memdyn._errors import CheckpointError
from memdyn._files import atomic_write_bytes, to_jsonable, write_json

T = TypeVar("T")
MAGIC = b"memdyn-checkpoint-v2\n"
_DIGEST = hashlib.sha256().digest_size
_FRESH = "delete it (and its .json copy) or rerun the command with --fresh to start over"


def metadata_copy(path: str | os.PathLike) -> Path:
    """The human-readable JSON copy of a checkpoint's metadata: `path` + `.json`."""
    path = Path(path)
    return path.with_suffix(path.suffix + ".json")


def _leaf_specs(tree: Any) -> list[list]:
    """`[key path, shape, dtype]` of every leaf `eqx.tree_serialise_leaves` writes (arrays and
    array-like scalars), in order."""
    specs = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if eqx.is_array_like(leaf):
            array = np.asarray(leaf) if not isinstance(leaf, jax.Array) else leaf
            name = jax.tree_util.keystr(key_path)
            specs.append([name, list(np.shape(array)), np.dtype(array.dtype).name])
    return specs


def save_checkpoint(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> Path:
    """Write `tree`'s array leaves and `meta` (JSON-able) to `path` atomically, together, under a
    SHA-256 that `load_checkpoint` verifies."""
    path = Path(path)
    header = {"meta": to_jsonable(meta), "leaves": _leaf_specs(tree)}
    header_bytes = json.dumps(header, allow_nan=False).encode()
    payload = io.BytesIO()
    payload.write(struct.pack(">Q", len(header_bytes)) + header_bytes)
    eqx.tree_serialise_leaves(payload, tree)
    body = payload.getvalue()
    atomic_write_bytes(path, MAGIC + hashlib.sha256(body).digest() + body)
    write_json(metadata_copy(path), meta)
    return path


def _verified_payload(path: Path, data: bytes | None) -> bytes:
    """The payload of the checkpoint at `path` (its bytes `data`, or read from `path`) once its
    magic line and SHA-256 check out."""
    if data is None:
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
        data = path.read_bytes()
    if not data.startswith(MAGIC):
        if data.startswith(b"memdyn-checkpoint-"):
            what = "was written by another version of memdyn's checkpoint format"
        else:
            what = "is not a memdyn checkpoint (bad header)"
        raise CheckpointError(f"checkpoint {path} {what}; {_FRESH}")
    digest, body = data[len(MAGIC) : len(MAGIC) + _DIGEST], data[len(MAGIC) + _DIGEST :]
    if len(digest) < _DIGEST or hashlib.sha256(body).digest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: its SHA-256 does not match its contents "
            f"({len(data)} bytes; changed or truncated since it was written); {_FRESH}"
        )
    return body


def load_checkpoint(
    path: str | os.PathLike, like: T, *, data: bytes | None = None
) -> tuple[T, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint` into a pytree shaped like `like`.

    Raises `CheckpointError` (naming the file and the way out) when the file is missing, is not a
    checkpoint, fails its SHA-256 check, or holds leaves whose key paths, shapes or dtypes differ
    from `like`'s; only the array values of `like` are replaced. `data`, if given, is the file's
    content, read already (by another process of a job, which sent it here): it is checked and
    read as the file would be, and `path` only names it in messages.
    """
    path = Path(path)
    body = _verified_payload(path, data)
    (size,) = struct.unpack(">Q", body[:8])
    header = json.loads(body[8 : 8 + size])
    saved, wanted = header["leaves"], _leaf_specs(like)
    if saved != wanted:
        differ = [(s, w) for s, w in zip(saved, wanted, strict=False) if s != w]
        detail = (
            f"leaf {differ[0][1][0]} is {differ[0][0][1:]} in the file, {differ[0][1][1:]} here"
            if differ
            else f"the file has {len(saved)} array leaves, this run {len(wanted)}"
        )
        raise CheckpointError(
            f"checkpoint {path} does not match the expected structure ({detail}): it was written "
            f"by a different model or run; use another path, or {_FRESH}"
        )
    tree = eqx.tree_deserialise_leaves(io.BytesIO(body[8 + size :]), like)
    return tree, header["meta"]


def config_fingerprint(config: Any, *, exclude: tuple[str, ...] = ()) -> str:
    """Ten hex digits of SHA-256 over a config dataclass's fields (minus `exclude`), for checkpoint
    names: runs with other settings in the same folder never pick up each other's checkpoints."""
    fields = {k: v for k, v in to_jsonable(config).items() if k not in exclude}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
