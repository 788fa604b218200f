"""Data-parallel training on every core: one LSTM step on 1 and 2 host devices against nn.LSTM.

XLA:CPU runs a recurrent loop's body on one thread, while oneDNN's `torch.nn.LSTM` uses every core
(issue 15: memdyn was 0.75× and 0.64× of it on two cores). Host devices, one per core
(`--xla_force_host_platform_device_count`), with each minibatch split over them
(`memdyn.train_chunk(..., mesh=memdyn.batch_mesh())`) are how one model's step uses them all. This
times one training step of one LSTM classifier (`decaynet.SequenceClassifier`, a linear head on
`q_D`, 10 classes, PyTorch's initialisation, Adam, softmax cross-entropy; random data of the
shape) on 1 and on 2 devices (strong scaling), and the same step in PyTorch (`nn.LSTM`, an
`nn.Linear` head, `torch.optim.Adam`, on the CPU) at 1 and at 2 threads, in the same run. The
device count is fixed when JAX starts, so each JAX measurement runs in a child process started
with its count, or in this process where it is one: a CPU process with just that many devices
(`"jax"` is the one on the most devices, the reference of the ratios; the 1-device one runs the
plain, unsharded step); PyTorch runs in this process. Before comparing, every JAX
step's loss and updated weights are checked against the first PyTorch step from the same weights
(`benchmarks.seeds`' tolerances), so all of them computed the same step. Run with
`python -m benchmarks --only data_parallel` (or `python -m benchmarks.data_parallel`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from benchmarks.peers import flushed_denormals, import_torch, strict_float32
from benchmarks.recurrent import (
    PERMUTED_MNIST,
    PIXEL_MNIST,
    PIXEL_MNIST_QUICK,
    ROW_MNIST,
    SequenceShape,
)
from benchmarks.seeds import LOSS_TOLERANCE, WEIGHT_TOLERANCE, _torch_step, torch_classifier
from benchmarks.timing import Timing, compare, measure
from decaynet import LSTMCell, PyTorchInit, SequenceClassifier, classifier_loss
from memdyn import TrainConfig, batch_mesh, init_run, train_chunk
from memdyn.internal import check_fields, check_positive

CLASSES = 10
TARGET_RATIO = 1.25  # issue 25: memdyn at least 1.25× nn.LSTM's throughput on both cores


@dataclasses.dataclass(frozen=True)
class Config:
    """One training step of one LSTM classifier per shape, on each device count and thread count.

    Attributes:
        shapes: batch, sequence length, inputs and hidden units (default: row-by-row and pixel
            MNIST, batch 64, hidden 64, and §6.1's permuted MNIST, batch 100, hidden 100).
        devices: host devices the JAX step runs on, each count in its own process; each must
            divide every shape's batch.
        torch_threads: `torch.set_num_threads` of the PyTorch peer; the fastest is its best.
        train: the optimiser (Table 2's Adam, lr 0.01), read by both sides.
        repeats: steady-state repeats per implementation.
        seed: PRNG seed of the weights and the random batch.
    """

    shapes: tuple[SequenceShape, ...] = (ROW_MNIST, PIXEL_MNIST, PERMUTED_MNIST)
    devices: tuple[int, ...] = (1, 2)
    torch_threads: tuple[int, ...] = (1, 2)
    train: TrainConfig = TrainConfig(optimizer="adam", learning_rate=0.01, chunk_steps=1)
    repeats: int = 20
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if not (self.shapes and self.devices and self.torch_threads):
            raise ValueError("shapes, devices and torch_threads must each name at least one")
        for count in (*self.devices, *self.torch_threads):
            check_positive("devices and torch_threads", count)
        for shape in self.shapes:
            for count in self.devices:
                if shape.batch % count:
                    raise ValueError(
                        f"devices: {count} does not divide the batch {shape.batch} of {shape.name}"
                    )
        check_positive("repeats", self.repeats)
        if self.train.optimizer != "adam":  # the PyTorch peer is torch.optim.Adam
            raise ValueError(f"train.optimizer must be 'adam'; got {self.train.optimizer!r}")

    def quick(self) -> Config:
        """Pixel MNIST cut to 196 steps, 3 repeats."""
        return dataclasses.replace(self, shapes=(ROW_MNIST, PIXEL_MNIST_QUICK), repeats=3)


def _make(shape: SequenceShape):
    def make(key):
        return eqx.nn.make_with_state(SequenceClassifier)(
            cell=LSTMCell,
            input_size=shape.input_size,
            hidden_size=shape.hidden_size,
            num_classes=CLASSES,
            sequence_length=shape.time,
            init=PyTorchInit(),
            key=key,
        )

    return make


def _init(shape: SequenceShape, seed: int, optimizer) -> tuple[Any, Any]:
    """`memdyn.init_run` of the classifier of `shape` for one seed, compiled as one program:
    eagerly, its vmapped initialisation dispatches (and compiles) an operation at a time, which
    took longer than compiling the step in each process."""
    return eqx.filter_jit(init_run)(_make(shape), [seed], optimizer)


@functools.partial(jax.jit, static_argnums=(0, 1))  # one program, not one per operation
def _data(shape: SequenceShape, seed: int) -> tuple[jax.Array, jax.Array]:
    data_key, label_key = jax.random.split(jax.random.key(seed))
    xs = jax.random.uniform(data_key, (shape.batch, shape.time, shape.input_size), jnp.float32)
    return xs, jax.random.randint(label_key, (shape.batch,), 0, CLASSES)


def placed_step(shape: SequenceShape, config: Any, mesh: Mesh | None) -> Callable[[], Any]:
    """One training step (`memdyn.train_chunk`, one seed, `config.train`'s optimiser) of the
    classifier of `shape` on a random batch (`config.seed`), with every array placed on `mesh`
    (replicated) once, as `train_epochs` places them, not in every timed call. On a mesh over
    several processes, every process builds the same values from the same seed."""
    optimizer = config.train.make_optimizer()
    run_state, static = _init(shape, config.seed, optimizer)
    xs, ys = _data(shape, config.seed)
    index = jnp.arange(shape.batch).reshape(1, 1, shape.batch)
    state = (run_state.params, run_state.opt_state, run_state.model_state)
    data = (xs, ys, index)
    if mesh is not None:
        state, data = jax.device_put((state, data), NamedSharding(mesh, PartitionSpec()))

    def step():
        return train_chunk(*state, static, classifier_loss, optimizer, *data, mesh=mesh)

    return step


def time_on_devices(config: Config, devices: int, out: Path) -> list[dict[str, Any]]:
    """In a process with at least `devices` JAX devices: time one step of every shape on the
    first `devices` of them (the plain step on one), and write each step's loss and updated
    parameters to `out/<shape>-<devices>.eqx`."""
    if len(jax.devices()) < devices:
        raise RuntimeError(f"{devices} devices asked, {len(jax.devices())} present")
    mesh = batch_mesh(jax.devices()[:devices]) if devices > 1 else None
    cases = []
    with strict_float32():
        for shape in config.shapes:
            step = placed_step(shape, config, mesh)
            timing = measure(step, repeats=config.repeats)
            params, _, _, losses, _ = step()
            eqx.tree_serialise_leaves(out / f"{shape.name}-{devices}.eqx", (params, losses))
            cases.append(
                {
                    "shape": shape.name,
                    "timing": dataclasses.asdict(timing),
                    "devices": [str(d) for d in (mesh.devices.flat if mesh else jax.devices()[:1])],
                }
            )
    return cases


def _in_child(config: Config, devices: int, out: Path) -> list[dict[str, Any]]:
    """`time_on_devices` in a new process started with `devices` host devices."""
    env = dict(os.environ)  # memdyn's XLA flags, if this process added them, are passed on
    count = f"--xla_force_host_platform_device_count={devices}"
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {count}"
    env["JAX_PLATFORMS"] = "cpu"
    request = {"config": dataclasses.asdict(config), "devices": devices, "out": str(out)}
    done = subprocess.run(
        [sys.executable, "-c", "from benchmarks.data_parallel import _child; _child()"],
        input=json.dumps(request),
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"the {devices}-device JAX process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def is_cpu_process_with(devices: int) -> bool:
    """Whether this process is what a benchmark's child with `devices` host devices would be: on
    the CPU, with exactly that many devices (then it measures here rather than start one)."""
    return jax.default_backend() == "cpu" and jax.device_count() == devices


def _in_a_process(config: Config, devices: int, out: Path) -> list[dict[str, Any]]:
    """`time_on_devices` in a process with `devices` host devices: this one where it is such a
    process (`is_cpu_process_with`), else a new one."""
    if is_cpu_process_with(devices):
        return time_on_devices(config, devices, out)
    return _in_child(config, devices, out)


def _child() -> None:
    request = json.loads(sys.stdin.read())
    values = request["config"]
    config = Config(
        **{
            **values,
            "shapes": tuple(SequenceShape(**shape) for shape in values["shapes"]),
            "devices": tuple(values["devices"]),
            "torch_threads": tuple(values["torch_threads"]),
            "train": TrainConfig(**values["train"]),
        }
    )
    cases = time_on_devices(config, request["devices"], Path(request["out"]))
    print(json.dumps(cases))


def _name(devices: int, most: int) -> str:
    return "jax" if devices == most else f"jax-{devices}-device{'s' * (devices > 1)}"


def _time_torch(torch, config: Config, shape: SequenceShape, params, threads: int):
    """One Adam step of the PyTorch peer at `threads` threads: its timing, loss and weights."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        xs, ys = _data(shape, config.seed)
        x = torch.tensor(np.asarray(xs), dtype=torch.float32)
        y = torch.tensor(np.asarray(ys), dtype=torch.long)
        adam = lambda tensors: torch.optim.Adam(
            tensors, lr=config.train.learning_rate, eps=config.train.eps
        )
        logits, tensors = torch_classifier(torch, "lstm", params, "cpu")
        optimizer = adam(tensors)
        step = lambda: _torch_step(torch, logits, optimizer, x, y)
        with flushed_denormals(torch):  # as XLA:CPU runs JAX: PyTorch's best
            timing = measure(step, repeats=config.repeats)
        logits, tensors = torch_classifier(torch, "lstm", params, "cpu")  # the first step again
        loss = _torch_step(torch, logits, adam(tensors), x, y).item()
        return timing, loss, [t.detach().numpy() for t in tensors]
    finally:
        torch.set_num_threads(previous)


def _agreement(initial, updated, losses, torch_loss: float, torch_weights) -> dict[str, float]:
    """How far one JAX step (seed 0) is from PyTorch's (`benchmarks.seeds`' convention: the
    summed LSTM bias moves by both of PyTorch's biases' steps)."""
    before = jax.tree.map(lambda leaf: np.asarray(leaf[0]), initial)
    after = jax.tree.map(lambda leaf: np.asarray(leaf[0]), updated)
    expected = [after.cell.weight_input, after.cell.weight_recurrent, after.cell.bias]
    expected += [after.cell.bias - before.cell.bias, after.head.weight, after.head.bias]
    return {
        "max_abs_diff_loss": abs(torch_loss - float(np.asarray(losses)[0, 0])),
        "max_abs_diff_updated_weights": max(
            float(np.max(np.abs(t - e))) for t, e in zip(torch_weights, expected, strict=True)
        ),
    }


def run(config: Config) -> dict[str, Any]:
    """Per shape: JAX on each device count (each in its own process), PyTorch at each thread
    count, their agreement, the strong scaling and the ratio to PyTorch's best."""
    most = max(config.devices)
    optimizer = config.train.make_optimizer()
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        children = {devices: _in_a_process(config, devices, out) for devices in config.devices}
        torch, reason = import_torch()
        cases = []
        for index, shape in enumerate(config.shapes):
            with strict_float32():
                initial, static = _init(shape, config.seed, optimizer)
            like = (initial.params, jnp.zeros((1, 1), jnp.float32))
            steps = {
                d: eqx.tree_deserialise_leaves(out / f"{shape.name}-{d}.eqx", like)
                for d in config.devices
            }
            timings: dict[str, Timing | str] = {}
            devices = {}
            for d, child in children.items():
                timing = child[index]["timing"]
                timings[_name(d, most)] = Timing(**{**timing, "times_s": tuple(timing["times_s"])})
                devices[_name(d, most)] = child[index]["devices"]
            case: dict[str, Any] = {
                "case": f"lstm-{shape.name}",
                "shape": shape,
                "classes": CLASSES,
                "optimizer": {"name": "adam", "learning_rate": config.train.learning_rate},
                "jax_devices": devices,
                # The sharded steps against the one-device step: rounding, nothing more.
                "max_abs_diff_vs_1_device": {
                    _name(d, most): _largest_gap(steps[d], steps[min(config.devices)])
                    for d in config.devices
                },
            }
            if torch is None:
                timings["torch"] = reason
            else:
                seed_params = jax.tree.map(lambda leaf: np.asarray(leaf[0]), initial.params)
                case["agreement"] = {}
                for threads in config.torch_threads:
                    name = f"torch-{threads}-thread{'s' * (threads > 1)}"
                    with strict_float32():
                        timings[name], loss, weights = _time_torch(
                            torch, config, shape, seed_params, threads
                        )
                    if threads == config.torch_threads[0]:  # one step: any thread count
                        case["agreement"] = {
                            _name(d, most): _agreement(initial.params, *steps[d], loss, weights)
                            for d in config.devices
                        }
            case.update(compare(timings))
            cases.append(_finish(case, shape))
    return {"cases": cases}


def _largest_gap(a: Any, b: Any) -> float:
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in pairs)


def _finish(case: dict[str, Any], shape: SequenceShape) -> dict[str, Any]:
    """Steps per second, speed-ups over one device and over PyTorch's best, the target, a line."""
    implementations = case["implementations"]
    case["steps_per_s"] = {
        name: 1 / timing["median_s"]
        for name, timing in implementations.items()
        if "median_s" in timing
    }
    case["scaling"] = {n: r for n, r in case["median_ratio"].items() if n.startswith("jax-")}
    torch_ratios = {n: r for n, r in case["median_ratio"].items() if n.startswith("torch")}
    text = f"{shape.batch}x{shape.time}x{shape.input_size}, hidden {shape.hidden_size}: "
    text += ", ".join(f"{n} {r:.2f}x jax's time" for n, r in case["median_ratio"].items())
    if torch_ratios:
        best = min(torch_ratios, key=torch_ratios.get)
        case["best_torch_peer"] = {"name": best, "median_ratio": torch_ratios[best]}
        case["target"] = {
            "throughput_ratio": TARGET_RATIO,
            "met": torch_ratios[best] >= TARGET_RATIO,
        }
        agreement = case["agreement"]
        within = all(
            gaps["max_abs_diff_loss"] <= LOSS_TOLERANCE
            and gaps["max_abs_diff_updated_weights"] <= WEIGHT_TOLERANCE
            for gaps in agreement.values()
        )
        agreement_summary = {"loss_tolerance": LOSS_TOLERANCE, "weight_tolerance": WEIGHT_TOLERANCE}
        case["agreement_tolerance"] = {**agreement_summary, "within_tolerance": within}
        text += "; steps agree with PyTorch's" if within else "; MISMATCH, times not comparable"
    case["summary"] = text
    return case


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("data_parallel",)))
