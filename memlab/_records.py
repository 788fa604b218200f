"""Records of a run: figures saved in every format, and the environment a number was computed in."""

from __future__ import annotations

import dataclasses
import io
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import jax
import numpy as np

from memdyn.internal import atomic_write_bytes, stack_verdict, versions

# The source tree whose git commit a record names: the checkout the lab is imported from.
SOURCE_DIR = Path(__file__).resolve().parent


FIGURE_FORMATS = ("png", "pdf", "svg")

# The layout of a record's `config`: 1, every field flat (records without the key); 2, a config's
# nested parts as JSON objects of their own (`train: {"learning_rate": ...}`). A record of another
# version is refused by name (`memlab._results.config_of`), never read by guessing.
CONFIG_SCHEMA = 2


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


def _cpus_available() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment() -> dict[str, Any]:
    """What a reader needs to reproduce a number: the source's git commit and dirty flag, the
    host, versions of every numerical dependency, Python, platform, backend and devices, and the
    stack's verdict (`memdyn.doctor`'s canaries, XLA flags, processor), so that a result computed
    on a stack that gets mapped gradients wrong is marked (`stack.ok` false).

    `cpus_available` is how many CPUs the process may run on: XLA:CPU splits some operations
    over that many threads, so float32 results change at rounding with it, and a long chaotic
    training can end elsewhere (pMNIST: 41.3 against 31.6 % test accuracy after 100 steps of the
    same seed with two cores or one).

    `x64_default` is JAX's global float64 switch at the time of the call; experiments that turn
    float64 on inside their run (the curse analyses) are told apart by `float_dtypes` of their
    result, which `memlab.execute` records next to this.
    """
    return {
        **git_revision(SOURCE_DIR),
        "host": socket.gethostname(),
        "versions": versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpus_available": _cpus_available(),
        "x64_default": bool(jax.config.read("jax_enable_x64")),
        "stack": stack_verdict(),
    }
