"""Benchmark records on disk and on screen: run one benchmark, write its JSON, format a table.

A record is `{"benchmark", "config", "environment", "ratio_definition", **result}`: the versions and
devices of `memlab.environment()` plus PyTorch's, and the benchmark's cases, each with its
implementations' timings (`benchmarks.timing.compare`). Files are written atomically with
`memdyn.internal.write_json`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from benchmarks import NAMES
from benchmarks.peers import torch_environment
from benchmarks.timing import RATIO_DEFINITION
from memdyn.internal import check_in, to_jsonable, write_json
from memlab import environment

FIRST_CALL_NOTE = (
    "first_call_s: tracing, compilation and one run for JAX; one warm-up run for PyTorch and SciPy"
)


def default_config(name: str, *, quick: bool = False) -> Any:
    """The benchmark's default `Config`, or its `quick()` variant."""
    check_in("benchmark", name, NAMES)
    config = importlib.import_module(f"benchmarks.{name}").Config()
    return config.quick() if quick else config


def execute(name: str, config: Any, out_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """Run benchmark `name` with `config` and write `out_dir/<name>.json`; the path and record."""
    check_in("benchmark", name, NAMES)
    # The load before the run: on a shared machine it says how far to trust the times.
    machine = {"cpu_count": os.cpu_count(), "load_average_1_5_15_min": os.getloadavg()}
    result = importlib.import_module(f"benchmarks.{name}").run(config)
    record = to_jsonable(
        {
            "benchmark": name,
            "config": config,
            "environment": {**environment(), **machine, "torch": torch_environment()},
            "ratio_definition": RATIO_DEFINITION,
            "first_call_note": FIRST_CALL_NOTE,
            **result,
        }
    )
    return write_json(Path(out_dir) / f"{name}.json", record), record


def _seconds(value: float) -> str:
    return f"{value * 1e3:10.2f}" if value < 10 else f"{value:9.1f}s"


def format_table(record: dict[str, Any]) -> str:
    """A short table: per case and implementation, first call, median, min and IQR in ms."""
    header = (
        f"{'case':<20} {'impl':<6} {'first ms':>10} {'median ms':>10} {'min ms':>10} "
        f"{'IQR ms':>10} {'/ ' + 'jax':>8}"
    )
    lines = [f"== {record['benchmark']} ==", header]
    for case in record["cases"]:
        ratios = case["median_ratio"]
        for name, timing in case["implementations"].items():
            if "skipped" in timing:
                lines.append(f"{case['case']:<20} {name:<6} skipped: {timing['skipped']}")
                continue
            ratio = f"{ratios[name]:8.2f}" if name in ratios else f"{'1':>8}"
            cells = (timing[k] for k in ("first_call_s", "median_s", "min_s", "iqr_s"))
            lines.append(
                f"{case['case']:<20} {name:<6} " + " ".join(map(_seconds, cells)) + f" {ratio}"
            )
        lines.append(f"{'':<20} {case['summary']}")
    return "\n".join(lines)
