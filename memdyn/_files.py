"""Files written whole or not at all, and JSON of array pytrees: what checkpoints and records
share. A reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _file_mode() -> int:
    """`0o666` less the process's umask: the mode `open()` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one.

    The bytes go to a temporary file in the same directory, are fsync'ed, then `os.replace`d. The
    file gets the mode an ordinary `open()` gives (`0o666` less the umask, so 0644 by default),
    not `mkstemp`'s private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert arrays, scalars, dataclasses and containers into plain JSON values.

    Non-finite floats become `None` (strict JSON has no NaN or infinity); a caller that needs to
    say *why* a value is missing stores a flag next to it.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool | str) or obj is None:
        return obj
    if hasattr(obj, "__array__") or isinstance(obj, np.generic):
        arr = np.asarray(obj)
        if arr.ndim == 0:
            return to_jsonable(arr.item())
        return [to_jsonable(v) for v in arr.tolist()]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, int):
        return obj
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` (converted by `to_jsonable`) as indented, strict JSON."""
    text = json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode())
