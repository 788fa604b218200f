"""A sweep as a job array: split it into chunks in a folder, launch them, merge their records.

The folder `DIR` holds the plan and every chunk's output:

    DIR/array.json              the experiment, the whole config and the number of chunks
    DIR/configs/chunk_<i>.json  chunk i's config (`AbstractSweep.split`), for reading
    DIR/chunk_<i>/<name>.json   chunk i's record, written by `memdyn array run DIR --chunk i`
    DIR/logs/chunk_<i>.log      its output (and `.exit`, its exit status, under `LocalExecutor`)
    DIR/<name>.json, .png       the merged record, one record as a single run writes it

A chunk is complete when its record exists and holds exactly its config; `launch` runs only the
chunks that are not, so a failed chunk is rerun by launching again. Executors are strategies:
`LocalExecutor` runs the chunks as subprocesses of this machine, `SlurmExecutor` writes an
`sbatch --array` script (and submits it on request).
"""

from __future__ import annotations

import abc
import dataclasses
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from memdyn import MemdynError
from memdyn.internal import atomic_write_bytes, config_from_json, to_jsonable, write_json
from memlab._experiment import Experiment, execute, prepare_output, write_record
from memlab._records import CONFIG_SCHEMA
from memlab._registry import find_experiment
from memlab._results import config_of, read_record, result_arrays

PLAN = "array.json"
POLL_S = 0.2  # how often `LocalExecutor` looks for finished chunks


@dataclasses.dataclass(frozen=True)
class ArrayPlan:
    """A job array's plan, as `split_array` wrote it to `directory`."""

    directory: Path
    experiment: Experiment
    config: Any
    chunk_configs: tuple[Any, ...]

    def chunk_dir(self, index: int) -> Path:
        return self.directory / f"chunk_{index}"

    def log(self, index: int, suffix: str = "log") -> Path:
        return self.directory / "logs" / f"chunk_{index}.{suffix}"

    def chunk_record(self, index: int) -> Path:
        return self.chunk_dir(index) / f"{self.experiment.name}.json"


def _sweep_of(experiment: Experiment):
    if experiment.sweep is None:
        raise MemdynError(f"{experiment.name} declares no sweep: it cannot run as a job array")
    return experiment.sweep


def split_array(experiment: Experiment, config: Any, chunks: int, directory) -> ArrayPlan:
    """Write the plan of `config`'s sweep in `chunks` chunks to `directory`; a folder that holds
    another plan is refused (`MemdynError`), the same plan is left as it is."""
    directory = prepare_output(directory)
    configs = tuple(_sweep_of(experiment).split(config, chunks))
    package = experiment.run.__module__.partition(".")[0]
    plan = {
        "package": package,
        "experiment": experiment.name,
        "chunks": len(configs),
        "config_schema": CONFIG_SCHEMA,
        "config": config,
    }
    path = directory / PLAN
    if path.exists() and json.loads(path.read_text()) != to_jsonable(plan):
        raise MemdynError(f"{path} holds another job array: choose another folder")
    write_json(path, plan)
    for index, chunk in enumerate(configs):
        write_json(directory / "configs" / f"chunk_{index}.json", chunk)
    return ArrayPlan(directory, experiment, config, configs)


def load_array(directory) -> ArrayPlan:
    """The plan `split_array` wrote to `directory`."""
    directory = Path(directory).expanduser().resolve()
    path = directory / PLAN
    if not path.is_file():
        raise MemdynError(f"{directory}: no job array here (no {PLAN}; `memdyn array split`)")
    plan = json.loads(path.read_text())
    if plan.get("config_schema") != CONFIG_SCHEMA:
        raise MemdynError(f"{path}: config schema {plan.get('config_schema')}, not {CONFIG_SCHEMA}")
    experiment = find_experiment(plan["package"], plan["experiment"])
    config = config_from_json(experiment.config, plan["config"])
    configs = tuple(_sweep_of(experiment).split(config, plan["chunks"]))
    return ArrayPlan(directory, experiment, config, configs)


def chunk_status(plan: ArrayPlan, index: int) -> str:
    """`"done"` where chunk `index` has a record of exactly its config; otherwise what is known:
    its exit status, or that it has not run."""
    path = plan.chunk_record(index)
    if path.is_file():
        try:
            record = read_record(path)
            if config_of(record, plan.experiment) == plan.chunk_configs[index]:
                return "done"
            return f"its record at {path} holds another config: remove it and launch again"
        except MemdynError as err:
            return f"unreadable record ({err})"
    exit_file = plan.log(index, "exit")
    if exit_file.is_file():
        return f"failed (exit status {exit_file.read_text().strip()}; see {plan.log(index)})"
    if plan.log(index).is_file():
        return f"no record yet (running or failed; see {plan.log(index)})"
    return "not run"


def incomplete_chunks(plan: ArrayPlan) -> list[int]:
    """The chunks without a complete record, in order."""
    return [i for i in range(len(plan.chunk_configs)) if chunk_status(plan, i) != "done"]


def run_chunk(directory, index: int) -> dict[str, Path]:
    """Run chunk `index` of the array in `directory` in this process (what each task runs)."""
    plan = load_array(directory)
    if not 0 <= index < len(plan.chunk_configs):
        raise MemdynError(f"chunk {index} out of range: the array has {len(plan.chunk_configs)}")
    return execute(plan.experiment, plan.chunk_configs[index], plan.chunk_dir(index))


def chunk_command(directory: Path, index: int | str) -> list[str]:
    """The command that runs chunk `index` of the array in `directory` with this Python."""
    return [
        sys.executable,
        "-m",
        "memlab.cli",
        "array",
        "run",
        str(directory),
        "--chunk",
        str(index),
    ]


class AbstractExecutor(abc.ABC):
    """Where and how a job array's chunks run."""

    @abc.abstractmethod
    def launch(self, plan: ArrayPlan, chunks: Sequence[int]) -> dict[int, int | None]:
        """Start `chunks` of `plan`; their exit statuses where known (`None`: submitted)."""


@dataclasses.dataclass(frozen=True)
class LocalExecutor(AbstractExecutor):
    """Each chunk a subprocess on this machine (`python -m memlab.cli array run DIR --chunk i`),
    `parallel` at a time, its output in `DIR/logs/chunk_<i>.log` and its exit status in
    `.exit`; `env` replaces the environment they inherit."""

    parallel: int = 1
    env: Mapping[str, str] | None = None

    def launch(self, plan: ArrayPlan, chunks: Sequence[int]) -> dict[int, int | None]:
        pending, running, statuses = list(chunks), {}, {}
        while pending or running:
            while pending and len(running) < self.parallel:
                index = pending.pop(0)
                log = plan.log(index)
                log.parent.mkdir(parents=True, exist_ok=True)
                plan.log(index, "exit").unlink(missing_ok=True)
                with log.open("w") as out:
                    running[index] = subprocess.Popen(
                        chunk_command(plan.directory, index),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=None if self.env is None else dict(self.env),
                    )
            finished = [i for i, process in running.items() if process.poll() is not None]
            for index in finished:
                statuses[index] = running.pop(index).returncode
                atomic_write_bytes(plan.log(index, "exit"), f"{statuses[index]}\n".encode())
            if not finished:
                time.sleep(POLL_S)
        return dict(sorted(statuses.items()))


@dataclasses.dataclass(frozen=True)
class SlurmExecutor(AbstractExecutor):
    """A Slurm job array: writes `DIR/array.sbatch`, whose task `i` runs chunk `i`
    (`memdyn array run DIR --chunk $SLURM_ARRAY_TASK_ID`), with `options` as `#SBATCH` lines
    (e.g. `--gres=gpu:1`, `--time=04:00:00`) and `setup` lines (modules, a virtual environment)
    before the command; submitted with `sbatch` only when `submit` is true."""

    options: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    submit: bool = False

    def script(self, plan: ArrayPlan, chunks: Sequence[int]) -> str:
        """The sbatch script running `chunks` of `plan`."""
        every = list(range(len(plan.chunk_configs)))
        tasks = f"0-{every[-1]}" if list(chunks) == every else ",".join(map(str, chunks))
        logs = plan.directory / "logs" / "chunk_%a.log"
        command = shlex.join(["memdyn", "array", "run", str(plan.directory), "--chunk"])
        lines = [
            "#!/bin/bash",
            f"#SBATCH --job-name={plan.experiment.name}",
            f"#SBATCH --array={tasks}",
            f"#SBATCH --output={logs}",
            *(f"#SBATCH {option}" for option in self.options),
            "set -euo pipefail",
            *self.setup,
            f'{command} "$SLURM_ARRAY_TASK_ID"',
        ]
        return "\n".join(lines) + "\n"

    def launch(self, plan: ArrayPlan, chunks: Sequence[int]) -> dict[int, int | None]:
        path = plan.directory / "array.sbatch"
        atomic_write_bytes(path, self.script(plan, chunks).encode())
        (plan.directory / "logs").mkdir(exist_ok=True)
        print(f"wrote {path}")
        if self.submit:
            done = subprocess.run(["sbatch", str(path)], capture_output=True, text=True)
            if done.returncode:
                raise MemdynError(f"sbatch {path} failed: {done.stderr.strip()}")
            print(done.stdout.strip())
        return dict.fromkeys(chunks)


def launch(directory, executor: AbstractExecutor) -> dict[int, int | None]:
    """Launch the chunks of the array in `directory` that have no complete record."""
    plan = load_array(directory)
    return executor.launch(plan, incomplete_chunks(plan))


def merge_array(directory, *, command_line: Sequence[str] | None = None) -> dict[str, Path]:
    """Merge the chunks' records into `DIR/<name>.json` (and its figure): one record of the
    whole config, its result `sweep.merge` of the chunks'. Every chunk must be complete, its
    record of the planned experiment and config (`MemdynError` naming those that are not)."""
    plan = load_array(directory)
    missing = incomplete_chunks(plan)
    if missing:
        states = "; ".join(f"chunk {i}: {chunk_status(plan, i)}" for i in missing)
        raise MemdynError(f"{plan.directory}: {len(missing)} chunks incomplete ({states})")
    records = [read_record(plan.chunk_record(i)) for i in range(len(plan.chunk_configs))]
    result = plan.experiment.sweep.merge(
        plan.config, [result_arrays(record["result"]) for record in records]
    )
    metadata = {
        "command_line": list(sys.argv if command_line is None else command_line),
        "started_utc": min(r["started_utc"] for r in records),
        "finished_utc": max(r["finished_utc"] for r in records),
        "wall_time_s": sum(r["wall_time_s"] for r in records),
        "float_dtypes": sorted({d for r in records for d in r["float_dtypes"]}),
        "job_array": {
            "chunks": len(records),
            "records": [str(plan.chunk_record(i)) for i in range(len(records))],
            "hosts": [r["environment"]["host"] for r in records],
            "wall_time_s": [r["wall_time_s"] for r in records],
            "stack_ok": [r["environment"]["stack"]["ok"] for r in records],
        },
    }
    quick = any(r["quick"] for r in records)
    return write_record(
        plan.experiment, plan.config, result, plan.directory, metadata=metadata, quick=quick
    )


def describe(directory) -> str:
    """One line per chunk of the array in `directory`: its seeds (the split fields) and state."""
    plan = load_array(directory)
    lines = [f"{plan.experiment.name} in {len(plan.chunk_configs)} chunks at {plan.directory}"]
    for index, chunk in enumerate(plan.chunk_configs):
        fields = ", ".join(f"{f} {getattr(chunk, f)}" for f in plan.experiment.sweep.fields)
        lines.append(f"chunk {index} ({fields}): {chunk_status(plan, index)}")
    done = len(plan.chunk_configs) - len(incomplete_chunks(plan))
    hint = "`memdyn array merge`" if done == len(plan.chunk_configs) else "`memdyn array launch`"
    lines.append(f"{done} of {len(plan.chunk_configs)} done; next: {hint}")
    return "\n".join(lines)
