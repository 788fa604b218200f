"""Atomic, pickle-free checkpoints of pytrees (Equinox serialisation) with a JSON sidecar."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import equinox as eqx

from memdyn.records import atomic_write_bytes, write_json

T = TypeVar("T")


def save_checkpoint(path: str | os.PathLike, tree: Any, meta: dict[str, Any]) -> Path:
    """Write `tree`'s array leaves to `path` and `meta` to `path.json`, each atomically.

    The leaves are written first and the metadata last, so a metadata file always describes
    leaves that are complete on disk.
    """
    path = Path(path)
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, tree)
    atomic_write_bytes(path, buffer.getvalue())
    write_json(path.with_suffix(path.suffix + ".json"), meta)
    return path


def load_checkpoint(path: str | os.PathLike, like: T) -> tuple[T, dict[str, Any]]:
    """Read a checkpoint written by `save_checkpoint` into a pytree shaped like `like`."""
    path = Path(path)
    meta_path = path.with_suffix(path.suffix + ".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(f"no complete checkpoint at {path}")
    with open(path, "rb") as f:
        try:
            tree = eqx.tree_deserialise_leaves(f, like)
        except Exception as err:
            raise ValueError(
                f"checkpoint {path} does not match the expected structure: {err}"
            ) from err
    return tree, json.loads(meta_path.read_text())
