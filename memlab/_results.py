"""Results already on disk: find records, summarise and compare them, re-plot or rerun them.

A record is the JSON file `memlab.execute` writes (`OUT/<name>.json`): the experiment's name and
package, its config, the environment and the result. Nothing here recomputes a result; `rerun`
builds the config again, exactly, for `execute`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from memdyn import ConfigError, MemdynError
from memdyn.internal import config_from_json
from memlab._experiment import Experiment, draw_figure
from memlab._records import CONFIG_SCHEMA
from memlab._registry import find_experiment

RECORD_KEYS = ("experiment", "config", "result")


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """Load a record: a JSON file written by `execute`, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        candidates = [p for p in sorted(path.glob("*.json")) if _looks_like_record(p)]
        if len(candidates) != 1:
            raise MemdynError(
                f"{path}: expected one record (*.json written by a run) in this folder; "
                f"found {len(candidates)}: name the file instead"
            )
        path = candidates[0]
    if not path.is_file():
        raise MemdynError(f"{path}: no such record file")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MemdynError(
            f"{path}: not a JSON record ({err}); truncated or not a run's output?"
        ) from err
    if not isinstance(record, dict) or any(key not in record for key in RECORD_KEYS):
        raise MemdynError(f"{path}: not a memdyn record (needs keys {', '.join(RECORD_KEYS)})")
    record["path"] = str(path)
    return record


def _looks_like_record(path: Path) -> bool:
    try:
        head = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(head, dict) and all(key in head for key in RECORD_KEYS)


def find_records(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record under `root` (recursively), oldest first; checkpoint metadata is skipped."""
    root = Path(root)
    if not root.exists():
        raise MemdynError(f"{root}: no such results folder")
    paths = sorted(p for p in root.rglob("*.json") if "checkpoints" not in p.parts)
    records = [read_record(p) for p in paths if _looks_like_record(p)]
    return sorted(records, key=lambda r: (r.get("started_utc") or "", r["path"]))


def _labels(items: list[dict]) -> list[str]:
    """A readable, unique label per entry of a list of result dicts (e.g. Table 2's rows):
    its dataset, model (or name, cell) and size where present, else its index."""
    labels = []
    for index, item in enumerate(items):
        name = item.get("model") or item.get("name") or item.get("cell")
        parts = [item.get("dataset"), name, item.get("hidden")]
        label = "/".join(str(p) for p in parts if p is not None) or str(index)
        labels.append(label if label not in labels else f"{label}#{index}")
    return labels


def headline(record: dict[str, Any], *, limit: int = 12) -> dict[str, Any]:
    """The record's numeric scalar results by dotted key (in the result's order), at most
    `limit`; labels, flags and missing values are left out."""
    scalars: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if len(scalars) >= limit:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            scalars[prefix] = value
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for label, item in zip(_labels(value), value, strict=True):
                visit(f"{prefix}[{label}]", item)

    visit("", record["result"])
    return scalars


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.6g}"
    if value is None:
        return "—"
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= 48 else text[:45] + "..."


def stack_status(record: dict[str, Any]) -> str:
    """ "ok", "WRONG: ..." (the canaries failed where the record was computed: its numbers are
    not to be trusted) or "not checked" (a record older than `memdyn.doctor`)."""
    stack = record.get("environment", {}).get("stack")
    if not stack:
        return "not checked (no canary verdict in this record)"
    if stack.get("ok"):
        return "ok"
    wrong = [name for name, canary in stack.get("canaries", {}).items() if not canary.get("ok")]
    return f"WRONG: {'; '.join(wrong)} failed where this was computed; rerun on a fixed stack"


def summary(record: dict[str, Any]) -> str:
    """A few lines: what ran, when, from which source, how long, and its headline numbers."""
    env = record.get("environment", {})
    source = env.get("git_commit") or "unknown commit"
    if env.get("git_dirty"):
        source += " (dirty)"
    lines = [
        f"{record.get('package', '?')} {record['experiment']}: {record['path']}",
        f"  started {record.get('started_utc', '?')}, {record.get('wall_time_s', float('nan')):.1f}"
        f" s, source {source}",
    ]
    if record.get("command_line"):
        lines.append(f"  command: {' '.join(record['command_line'])}")
    lines.append(f"  stack: {stack_status(record)}")
    numbers = headline(record)
    lines += [f"  {key} = {_format(value)}" for key, value in numbers.items()]
    if not numbers:
        lines.append("  (no scalar results: see the figure or `memdyn csv`)")
    return "\n".join(lines)


def _flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A record's config with nested parts spread out by dotted path (`train.learning_rate`)."""
    flat: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat_config(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The config fields whose values differ between records `a` and `b`: (field by dotted
    path, a's, b's)."""
    config_a, config_b = _flat_config(a["config"]), _flat_config(b["config"])
    fields = sorted(set(config_a) | set(config_b))
    return [
        (name, config_a.get(name), config_b.get(name))
        for name in fields
        if config_a.get(name) != config_b.get(name)
    ]


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Config differences and headline numbers of two records of one experiment, side by side."""
    if (a.get("package"), a["experiment"]) != (b.get("package"), b["experiment"]):
        raise MemdynError(
            f"cannot compare a {a['experiment']} record with a {b['experiment']} record: "
            f"{a['path']}, {b['path']}"
        )
    rows = [("", "A", "B")]
    rows += [(f"config.{name}", _format(x), _format(y)) for name, x, y in config_diff(a, b)]
    ha, hb = headline(a, limit=60), headline(b, limit=60)
    for key in dict.fromkeys([*ha, *hb]):
        x, y = ha.get(key), hb.get(key)
        rows.append((key, _format(x), _format(y)))
    rows.append(("wall_time_s", _format(a.get("wall_time_s")), _format(b.get("wall_time_s"))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"A: {a['path']}", f"B: {b['path']}"]
    if len(rows) == 2 or not config_diff(a, b):
        lines.append("(same config)")
    versions = a.get("config_schema", 1), b.get("config_schema", 1)
    if versions[0] != versions[1]:
        lines.append(f"(config schema versions {versions[0]} and {versions[1]}: fields moved)")
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def experiment_of(record: dict[str, Any]) -> Experiment:
    """The `Experiment` that wrote `record`, found in the registry (`memlab._registry`)."""
    package = record.get("package")
    if not package:
        raise MemdynError(f"{record['path']}: the record names no package (written before 0.2)")
    try:
        return find_experiment(package, record["experiment"])
    except MemdynError as err:
        raise MemdynError(f"{record['path']}: {err}") from err


def config_of(record: dict[str, Any], experiment: Experiment | None = None) -> Any:
    """The record's config as the experiment's config dataclass, exactly as it ran.

    The record's config must have the layout of the current config class, field for field
    (`memdyn.internal.config_from_json`); one that does not (a record written before its config
    nested its parts, `config_schema` 1, or by a newer memdyn) is refused with an error naming
    the record and its schema version, never completed with defaults."""
    experiment = experiment or experiment_of(record)
    version = record.get("config_schema", 1)
    try:
        if version > CONFIG_SCHEMA:
            raise ConfigError(f"this memdyn reads config schema version {CONFIG_SCHEMA} at most")
        return config_from_json(experiment.config, record["config"])
    except ConfigError as err:
        layout = " (flat fields, before configs nested their parts)" if version == 1 else ""
        raise MemdynError(
            f"{record['path']}: its config, schema version {version}{layout}, cannot be read as "
            f"{experiment.config.__name__} (config schema version {CONFIG_SCHEMA}): {err}; run "
            f"`{record.get('package', '?')} {record['experiment']}` again for a record of this "
            "version"
        ) from err


def result_arrays(result: Any) -> Any:
    """A record's result with numeric lists as NumPy arrays (`None` as NaN), as `run` returned."""
    if isinstance(result, dict):
        return {key: result_arrays(value) for key, value in result.items()}
    if isinstance(result, list):
        if result and all(isinstance(v, dict) for v in result):
            return [result_arrays(v) for v in result]
        try:
            array = np.asarray(result, dtype=float)
        except (TypeError, ValueError):
            return [result_arrays(v) for v in result]
        integral = all(_integers(result))
        return array.astype(np.int64) if integral and array.size else array
    return result


def _integers(values: Any):
    for value in values:
        if isinstance(value, list):
            yield from _integers(value)
        else:
            yield isinstance(value, int) and not isinstance(value, bool)


def replot(record: dict[str, Any]):
    """The record's figure drawn again from its stored numbers (no recomputation)."""
    experiment = experiment_of(record)
    if experiment.plot is None:
        raise MemdynError(f"{record['experiment']} draws no figure")
    quick = bool(record.get("quick", False))
    return draw_figure(experiment, result_arrays(record["result"]), quick=quick)


def curves(record: dict[str, Any]) -> dict[str, str]:
    """Each loss or accuracy curve of the record as CSV text, by dotted key.

    A curve is a numeric array of one or two dimensions whose key names a loss or an accuracy;
    a 2-D array gets one column per row of its second axis (e.g. one per seed).
    """
    tables: dict[str, str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
            return
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for label, item in zip(_labels(value), value, strict=True):
                visit(f"{prefix}.{label}", item)
            return
        name = prefix.rsplit(".", 1)[-1].lower()
        if not isinstance(value, np.ndarray) or not ("loss" in name or "accuracy" in name):
            return
        if value.ndim not in (1, 2) or not np.issubdtype(value.dtype, np.number):
            return
        rows = value.reshape(len(value), -1)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["index"] + [f"{name}_{j}" for j in range(rows.shape[1])])
        writer.writerows([i, *map(repr, row.tolist())] for i, row in enumerate(rows))
        tables[prefix] = buffer.getvalue()

    visit("", result_arrays(record["result"]))
    return tables
