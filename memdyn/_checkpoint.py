"""Atomic, pickle-free checkpoints of pytrees (Equinox serialisation) with their metadata.

One file holds both, written in a single atomic replace: a magic line, the metadata as JSON
(length-prefixed), then the array leaves (`eqx.tree_serialise_leaves`). A process killed at any
moment leaves either the previous checkpoint or the new one, never leaves from one save with
metadata from another. `path.json` is a human-readable copy of the metadata, written after.
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

from memdyn._records import atomic_write_bytes, to_jsonable, write_json

T = TypeVar("T")
MAGIC = b"memdyn-checkpoint-v1\n"


def save_checkpoint(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> Path:
    """Write `tree`'s array leaves and `meta` (JSON-able) to `path` atomically, together."""
    path = Path(path)
    meta_bytes = json.dumps(to_jsonable(meta), allow_nan=False).encode()
    buffer = io.BytesIO()
    buffer.write(MAGIC + struct.pack(">Q", len(meta_bytes)) + meta_bytes)
    eqx.tree_serialise_leaves(buffer, tree)
    atomic_write_bytes(path, buffer.getvalue())
    write_json(path.with_suffix(path.suffix + ".json"), meta)
    return path


def load_checkpoint(path: str | os.PathLike, like: T) -> tuple[T, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint` into a pytree shaped like `like`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    data = path.read_bytes()
    header = len(MAGIC) + 8
    if not data.startswith(MAGIC) or len(data) < header:
        raise ValueError(f"{path} is not a memdyn checkpoint (bad header)")
    (size,) = struct.unpack(">Q", data[len(MAGIC) : header])
    try:
        meta = json.loads(data[header : header + size])
        tree = eqx.tree_deserialise_leaves(io.BytesIO(data[header + size :]), like)
    except Exception as err:
        raise ValueError(
            f"checkpoint {path} is truncated or does not match the expected structure: {err}"
        ) from err
    return tree, meta


def config_fingerprint(config: Any, *, exclude: tuple[str, ...] = ()) -> str:
    """Ten hex digits of SHA-256 over a config dataclass's fields (minus `exclude`), for checkpoint
    names: runs with other settings in the same folder never pick up each other's checkpoints."""
    fields = {k: v for k, v in to_jsonable(config).items() if k not in exclude}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
