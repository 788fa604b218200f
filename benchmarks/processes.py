"""Two processes against one: what a `jax.distributed` job costs on one machine.

The data-parallel LSTM training step of `benchmarks.data_parallel` (one classifier, Adam, each
batch split over the devices: `memdyn.train_chunk(..., mesh=memdyn.batch_mesh())`) runs on the
same two devices, the machine's two cores, in two ways:

- "jax": one process with two host devices;
- "jax-2-processes": a job of two localhost processes with one host device each
  (`jax.distributed.initialize`, the mesh over both processes' devices), so that the gradients'
  all-reduce crosses processes (Gloo on CPUs), as it does between the nodes of a cluster.

The ratio of the medians is the overhead of the processes. Both compute the same step, checked:
the loss and the updated weights of the job equal the single process's to float32 rounding (the
reduction may sum in another order). Each way runs in processes of its own, started here (the
single process's way in this one, where it is such a process: CPU, two devices).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from benchmarks.data_parallel import CLASSES, is_cpu_process_with, placed_step
from benchmarks.peers import strict_float32
from benchmarks.recurrent import PIXEL_MNIST, PIXEL_MNIST_QUICK, ROW_MNIST, SequenceShape
from benchmarks.timing import Timing, compare, measure
from memdyn import TrainConfig, batch_mesh, gather
from memdyn.internal import check_fields, check_positive

PROCESSES = 2
AGREEMENT_TOLERANCE = 1e-5  # relative, float32: the all-reduce's order of summation


@dataclasses.dataclass(frozen=True)
class Config:
    """One training step of one LSTM classifier per shape, on two devices: of one process, and
    of two processes.

    Attributes:
        shapes: batch, sequence length, inputs and hidden units (default: row-by-row and pixel
            MNIST, batch 64, hidden 64); each batch must be even (two devices).
        train: the optimiser (Table 2's Adam, lr 0.01).
        repeats: steady-state repeats per way.
        seed: PRNG seed of the weights and the random batch.
    """

    shapes: tuple[SequenceShape, ...] = (ROW_MNIST, PIXEL_MNIST)
    train: TrainConfig = TrainConfig(optimizer="adam", learning_rate=0.01, chunk_steps=1)
    repeats: int = 20
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if not self.shapes:
            raise ValueError("shapes must name at least one SequenceShape")
        for shape in self.shapes:
            if shape.batch % PROCESSES:
                raise ValueError(f"shapes: the batch {shape.batch} of {shape.name} is odd")
        check_positive("repeats", self.repeats)

    def quick(self) -> Config:
        """Pixel MNIST cut to 196 steps, 3 repeats."""
        return dataclasses.replace(self, shapes=(ROW_MNIST, PIXEL_MNIST_QUICK), repeats=3)


def time_step(config: Config) -> list[dict[str, Any]]:
    """In a process (of a job, after `jax.distributed.initialize`, or alone): time one step of
    every shape on `batch_mesh()` (every device of every process); the timing, and the loss and
    updated parameters, gathered on every process."""
    mesh = batch_mesh()
    cases = []
    with strict_float32():
        for shape in config.shapes:
            step = placed_step(shape, config, mesh)
            timing = measure(step, repeats=config.repeats)
            params, _, _, losses, _ = step()
            leaves = [np.asarray(leaf).ravel() for leaf in jax.tree.leaves(gather(params))]
            cases.append(
                {
                    "shape": shape.name,
                    "timing": dataclasses.asdict(timing),
                    "devices": [str(d) for d in mesh.devices.flat],
                    "loss": float(gather(losses)[0, 0]),
                    "params": np.concatenate(leaves).tolist(),
                }
            )
    return cases


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start(
    config: Config, processes: int, coordinator: str, index: int, log: Path
) -> subprocess.Popen:
    env = dict(os.environ)  # memdyn's XLA flags, if this process added them, are passed on
    count = f"--xla_force_host_platform_device_count={PROCESSES // processes}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {count}"
    env["JAX_PLATFORMS"] = "cpu"
    request = {
        "config": dataclasses.asdict(config),
        "processes": processes,
        "coordinator": coordinator,
        "index": index,
    }
    code = "from benchmarks.processes import _child; _child()"
    # Files, not pipes: a process blocked on a full pipe would hold the job's shutdown.
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(request)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parents[1],
        )


def _in_processes(config: Config, processes: int) -> list[dict[str, Any]]:
    """`time_step` in `processes` new processes (one job) on the machine's 2 devices in all;
    process 0's result."""
    coordinator = f"localhost:{_free_port()}"
    with tempfile.TemporaryDirectory() as folder:
        logs = [Path(folder) / f"process_{i}.log" for i in range(processes)]
        children = [_start(config, processes, coordinator, i, logs[i]) for i in range(processes)]
        try:
            for child in children:
                child.wait(timeout=1800)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
        texts = [log.read_text() for log in logs]
    for index, (child, text) in enumerate(zip(children, texts, strict=True)):
        if child.returncode:
            raise RuntimeError(f"process {index} of {processes} failed:\n{text[-3000:]}")
    return json.loads(texts[0].splitlines()[-1])


def _child() -> None:
    request = json.loads(sys.argv[1])
    values = request["config"]
    config = Config(
        **{
            **values,
            "shapes": tuple(SequenceShape(**shape) for shape in values["shapes"]),
            "train": TrainConfig(**values["train"]),
        }
    )
    if request["processes"] > 1:
        jax.distributed.initialize(
            request["coordinator"], request["processes"], request["index"],
            initialization_timeout=120,
        )  # fmt: skip
    cases = time_step(config)
    if request["index"] == 0:  # every process holds the same result
        print(json.dumps(cases))


def run(config: Config) -> dict[str, Any]:
    """Per shape: the step in one process and in a job of two, their agreement and the ratio."""
    if is_cpu_process_with(PROCESSES):
        alone = time_step(config)  # this process is what the single process would be
    else:
        alone = _in_processes(config, 1)
    job = _in_processes(config, PROCESSES)
    cases = []
    for shape, one, two in zip(config.shapes, alone, job, strict=True):
        timings: dict[str, Timing | str] = {
            name: Timing(**{**side["timing"], "times_s": tuple(side["timing"]["times_s"])})
            for name, side in (("jax", one), ("jax-2-processes", two))
        }
        a, b = np.asarray(one["params"]), np.asarray(two["params"])
        gap = float(np.linalg.norm(a - b) / np.linalg.norm(a))
        loss_gap = abs(one["loss"] - two["loss"]) / abs(one["loss"])
        case: dict[str, Any] = {
            "case": f"lstm-{shape.name}",
            "shape": shape,
            "classes": CLASSES,
            "devices": {"jax": one["devices"], "jax-2-processes": two["devices"]},
            "processes": {"jax": 1, "jax-2-processes": PROCESSES},
            "agreement": {
                "relative_gap_updated_weights": gap,
                "relative_gap_loss": loss_gap,
                "tolerance": AGREEMENT_TOLERANCE,
                "within_tolerance": max(gap, loss_gap) <= AGREEMENT_TOLERANCE,
            },
        }
        case.update(compare(timings))
        ratio = case["median_ratio"]["jax-2-processes"]
        verdict = "agree" if case["agreement"]["within_tolerance"] else "MISMATCH"
        case["summary"] = (
            f"{shape.batch}x{shape.time}x{shape.input_size}, hidden {shape.hidden_size}: 2 "
            f"processes x 1 device take {ratio:.2f}x one process x 2 devices; weights within "
            f"{gap:.1e} ({verdict})"
        )
        cases.append(case)
    return {"cases": cases}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("processes",)))
