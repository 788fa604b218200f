"""An experiment is a frozen config, a pure `run` returning numbers, and a `plot` of those numbers.

`execute` is the only place that touches the disk: before any computation it resolves the output
directory, creates it, proves it writable and locks it against a second run; then it times the
run, attaches the config, the command line, UTC times, the environment and the precision the
result was computed in, and writes `DIR/<name>.json` and `DIR/<name>.png` atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import os
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from memdyn import OutputError
from memdyn.internal import write_json
from memlab._records import CONFIG_SCHEMA, FIGURE_FORMATS, environment, float_dtypes, save_figure
from memlab._sweep import AbstractSweep

CHECKPOINTS = "checkpoints"  # the folder of `OUT` where experiments keep what a rerun resumes from
LOCK = ".lock"


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One CLI subcommand.

    Attributes:
        name: subcommand and file stem (`results/<name>/<name>.json`).
        help: one line for `--help`, naming the paper's figure or table.
        config: a frozen dataclass whose defaults reproduce the paper; it must provide a
            `quick()` method returning the small configuration used by `--quick`.
        run: `run(config, out_dir) -> dict` of numbers (arrays allowed). `out_dir` is for
            checkpoints of long runs, kept as `out_dir/checkpoints/<name>_*` (what `--fresh`
            removes and a rerun resumes from); results are written by `execute`, not by `run`.
        plot: `plot(result) -> matplotlib Figure` or `None` for no figure.
        sweep: how the run splits into chunks that run apart and how their results merge
            (`memlab.AbstractSweep`, e.g. `memlab.SeedSweep`), for `memdyn array`; `None`
            where it does not split.
    """

    name: str
    help: str
    config: type
    run: Callable[[Any, Path], dict[str, Any]]
    plot: Callable[[dict[str, Any]], Any] | None
    sweep: AbstractSweep | None = None


def is_quick(config: Any) -> bool:
    """Whether `config` equals its class's quick configuration (`type(config)().quick()`) and
    that differs from the defaults (the paper's setting): what marks a figure "quick run"."""
    if not callable(getattr(config, "quick", None)):
        return False
    default = type(config)()
    quick = default.quick()
    return config == quick and quick != default


def draw_figure(experiment: Experiment, result: dict[str, Any], *, quick: bool):
    """`experiment.plot(result)` with the house footer: the source (package, subcommand and
    what it reproduces) and, for a quick run, the quick mark (`memlab._style.stamp_figure`)."""
    from memlab._style import stamp_figure

    figure = experiment.plot(result)
    package = experiment.run.__module__.partition(".")[0]
    stamp_figure(figure, source=f"{package} {experiment.name} — {experiment.help}", quick=quick)
    return figure


def checkpoint_files(experiment: Experiment, out_dir: Path) -> list[Path]:
    """The checkpoint files `experiment` keeps under `out_dir` (`checkpoints/<name>_*`)."""
    return sorted((Path(out_dir) / CHECKPOINTS).glob(f"{experiment.name}_*"))


def prepare_output(out_dir: str | os.PathLike) -> Path:
    """Resolve `out_dir`, create it and prove it writable (a temporary file is created and
    removed); raise `OutputError` naming the directory otherwise."""
    if not str(out_dir).strip():
        raise OutputError("--out is empty: give a directory for the results (e.g. results/NAME)")
    path = Path(out_dir).expanduser().resolve()
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"--out {path} is a file, not a directory: choose another --out")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(
            f"--out {path} cannot be created or written ({err.strerror or err}): fix its "
            "permissions or choose another --out"
        ) from err
    return path


@contextlib.contextmanager
def output_lock(out_dir: Path, command_line: Sequence[str]) -> Iterator[Path]:
    """Hold an exclusive `flock` on `out_dir/.lock` (which names this process: pid, host, command
    line, start time) for the duration; the kernel releases it when the process dies. A second
    run on the same directory raises `OutputError` at once, saying who holds it."""
    path = out_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise OutputError(f"cannot open the lock file {path} ({err.strerror or err})") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            raise OutputError(
                f"--out {out_dir} is in use by another run ({holder}; lock {path}): wait for it "
                "to finish or choose another --out"
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        holder = (
            f"pid {os.getpid()} on {socket.gethostname()}, started {started}: "
            f"{shlex.join(command_line)}"
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode() + b"\n", 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def execute(
    experiment: Experiment,
    config: Any,
    out_dir: str | os.PathLike,
    *,
    fresh: bool = False,
    command_line: Sequence[str] | None = None,
    quick: bool | None = None,
    vector: str | None = None,
) -> dict[str, Path]:
    """Run `experiment` with `config`, then write its JSON record and PNG figure to `out_dir`.

    Before any computation `out_dir` is resolved, created and tested for writing, and locked for
    the whole call (`OutputError` if any of that fails, or if another run holds it). `fresh`
    removes the experiment's checkpoints under `out_dir` first, so that the run starts over.
    The record holds the config (nested parts as JSON objects; `config_schema` names the layout,
    `memlab._records.CONFIG_SCHEMA`), the command line (`command_line`, default `sys.argv`), UTC
    start and end times (ISO 8601), the wall time, `memlab.environment()` and the floating dtypes
    of the result's arrays, and whether the run was quick (`quick`, default `is_quick(config)`),
    which also marks the figure. The figure is a PNG, plus a `vector` copy ("pdf" or "svg") on
    request.
    """
    if vector is not None and vector not in FIGURE_FORMATS[1:]:
        raise ValueError(f"vector must be 'pdf' or 'svg' (or None); got {vector!r}")
    quick = is_quick(config) if quick is None else bool(quick)
    command_line = list(sys.argv if command_line is None else command_line)
    out_dir = prepare_output(out_dir)
    with output_lock(out_dir, command_line):
        if fresh:
            # Metadata copies (`*.json`) sort after their checkpoints: remove them first, so that a
            # kill midway never leaves a copy whose checkpoint is gone (which reads as a loss).
            for path in reversed(checkpoint_files(experiment, out_dir)):
                path.unlink()
        started = _utc_now()
        start = time.perf_counter()
        result = experiment.run(config, out_dir)
        seconds = time.perf_counter() - start
        metadata = {
            "command_line": command_line,
            "started_utc": started,
            "finished_utc": _utc_now(),
            "wall_time_s": seconds,
        }
        return write_record(
            experiment, config, result, out_dir, metadata=metadata, quick=quick, vector=vector
        )


def write_record(
    experiment: Experiment,
    config: Any,
    result: dict[str, Any],
    out_dir: Path,
    *,
    metadata: dict[str, Any],
    quick: bool,
    vector: str | None = None,
) -> dict[str, Path]:
    """Write `out_dir/<name>.json`, the record of `result` (the experiment, its config, then
    `metadata`, the environment, the result's floating dtypes unless `metadata` names them, and
    `quick`), and the figure (PNG, plus a `vector` copy); `OutputError` if a file cannot be
    written. Returns the paths by kind ("json", "png", ...)."""
    record = {
        "experiment": experiment.name,
        "package": experiment.run.__module__.partition(".")[0],
        "config": config,
        "config_schema": CONFIG_SCHEMA,
        **metadata,
        "environment": environment(),
        "float_dtypes": metadata.get("float_dtypes", float_dtypes(result)),
        "quick": quick,
        "result": result,
    }
    target = out_dir / f"{experiment.name}.json"
    try:
        paths = {"json": write_json(target, record)}
        if experiment.plot is not None:
            figure = draw_figure(experiment, result, quick=quick)
            for kind in ("png", vector) if vector else ("png",):
                target = out_dir / f"{experiment.name}.{kind}"
                paths[kind] = save_figure(figure, target, close=kind == (vector or "png"))
    except OSError as err:
        raise OutputError(
            f"could not write {target} ({err.strerror or err}); free space or fix the "
            "permissions, then rerun (checkpoints, if any, make the rerun quick)"
        ) from err
    return paths
