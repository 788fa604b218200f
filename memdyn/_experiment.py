"""An experiment is a frozen config, a pure `run` returning numbers, and a `plot` of those numbers.

`execute` is the only place that touches the disk: it times the run, attaches the config and the
environment, and writes `DIR/<name>.json` and `DIR/<name>.png` atomically.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memdyn._records import environment, save_figure, write_json


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One CLI subcommand.

    Attributes:
        name: subcommand and file stem (`results/<name>/<name>.json`).
        help: one line for `--help`, naming the paper's figure or table.
        config: a frozen dataclass whose defaults reproduce the paper; it must provide a
            `quick()` method returning the small configuration used by `--quick`.
        run: `run(config, out_dir) -> dict` of numbers (arrays allowed). `out_dir` is for
            checkpoints of long runs; results are written by `execute`, not by `run`.
        plot: `plot(result) -> matplotlib Figure` or `None` for no figure.
    """

    name: str
    help: str
    config: type
    run: Callable[[Any, Path], dict[str, Any]]
    plot: Callable[[dict[str, Any]], Any] | None


def execute(experiment: Experiment, config: Any, out_dir: str | Path) -> dict[str, Path]:
    """Run `experiment` with `config`, then write its JSON record and PNG figure to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = experiment.run(config, out_dir)
    seconds = time.perf_counter() - start
    record = {
        "experiment": experiment.name,
        "config": config,
        "wall_time_s": seconds,
        "environment": environment(),
        "result": result,
    }
    paths = {"json": write_json(out_dir / f"{experiment.name}.json", record)}
    if experiment.plot is not None:
        paths["png"] = save_figure(experiment.plot(result), out_dir / f"{experiment.name}.png")
    return paths
