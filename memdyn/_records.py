"""Results on disk: atomic writes, JSON conversion of array pytrees, and the run environment."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from memdyn._doctor import stack_verdict, versions

# The source tree whose git commit a record names: the checkout memdyn is imported from.
SOURCE_DIR = Path(__file__).resolve().parent


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


FIGURE_FORMATS = ("png", "pdf", "svg")


def save_figure(
    fig, path: str | os.PathLike, *, format: str | None = None, dpi: int = 150, close: bool = True
) -> Path:
    """Atomically save a matplotlib figure (PNG, or the vector PDF/SVG) and, by default, close it.

    `format` defaults to the suffix of `path`; `close=False` keeps the figure open for another
    format.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    format = format or path.suffix.lstrip(".").lower() or "png"
    if format not in FIGURE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(FIGURE_FORMATS)}; got {format!r}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def git_revision(directory: str | os.PathLike) -> dict[str, Any]:
    """`{"git_commit": HEAD's SHA-1, "git_dirty": tracked files differ from it}` of the git
    checkout that holds `directory`, or both `None` where it is not in one (or git is missing or
    hangs)."""
    unknown = {"git_commit": None, "git_dirty": None}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args],
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=10,
                env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"),  # never take the index lock
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    if commit is None or status is None:
        return unknown
    return {"git_commit": commit.strip(), "git_dirty": bool(status.strip())}


def float_dtypes(tree: Any) -> list[str]:
    """The sorted names of the floating and complex dtypes of the arrays in `tree` (dicts, lists
    and dataclasses are walked): the precision a result was actually computed in."""
    found = set()

    def visit(obj):
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        if isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, list | tuple):
            for value in obj:
                visit(value)
        elif isinstance(obj, jax.Array | np.ndarray | np.generic):
            if np.issubdtype(obj.dtype, np.inexact):
                found.add(np.dtype(obj.dtype).name)

    visit(tree)
    return sorted(found)


def environment() -> dict[str, Any]:
    """What a reader needs to reproduce a number: the source's git commit and dirty flag, the
    host, versions of every numerical dependency, Python, platform, backend and devices, and the
    stack's verdict (`memdyn.doctor`'s canaries, XLA flags, processor), so that a result computed
    on a stack that gets mapped gradients wrong is marked (`stack.ok` false).

    `x64_default` is JAX's global float64 switch at the time of the call; experiments that turn
    float64 on inside their run (the curse analyses) are told apart by `float_dtypes` of their
    result, which `memdyn.execute` records next to this.
    """
    return {
        **git_revision(SOURCE_DIR),
        "host": socket.gethostname(),
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "x64_default": bool(jax.config.read("jax_enable_x64")),
        "stack": stack_verdict(),
    }
