"""Many seeds at once (Table 2): one compiled JAX training step of 16 seeds against a PyTorch loop.

Table 2 trains each row's seeds together: the row-by-row MNIST classifier (`decaynet.
row_classifier`: 28 steps of 28 pixels, a gated cell, a linear head on `q_D`, 10 classes, PyTorch's
initialisation) with Adam (lr 0.01, batch 64), every seed's step mapped inside the compiled
chunk of `memdyn.train_epochs`, the seeds split over the devices as Table 2 splits them
(`memdyn.sweep_mesh_for`: on the CPU one host device per core, so every core steps its share of
the seeds; "jax-one-device" is the same step with every seed on one device). Here that chunk
runs one step of all seeds on random data of MNIST's shape (pixels in [0, 1), random labels; no
dataset). The peer is what a PyTorch user writes: one model and one `torch.optim.Adam` per seed
(`torch.nn.LSTM` + `nn.Linear`; for DecayNet, which has no PyTorch module,
`benchmarks._torch_decay.decay_states` + `nn.Linear`) and a loop over the seeds, each doing
forward, backward and step. The ratio of the medians is the throughput ratio. Before
comparing, seed 0's initial weights go into a fresh PyTorch model; its loss and updated weights
after one step must match the JAX step's (`nn.LSTM` has two biases where the JAX cell has their
sum: each takes the JAX bias's Adam step, so the summed bias moves twice as far; the work per step
is the same). Run with `python -m benchmarks --only seeds` (or
`python -m benchmarks.seeds`).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.peers import (
    flushed_denormals,
    import_torch,
    strict_float32,
    torch_device,
    torch_wait,
)
from benchmarks.recurrent import CELL_FIELDS, torch_tensor
from benchmarks.timing import Timing, compare, measure
from decaynet import PyTorchInit
from decaynet._model import row_classifier
from decaynet._registry import CELLS, resolve_cell
from decaynet._train import classifier_loss
from memdyn import ConfigError, TrainConfig, init_run, sweep_mesh_for, train_chunk
from memdyn.internal import check_fields, check_in, check_positive

ROWS, PIXELS, CLASSES = 28, 28, 10
# Float32, one step: losses agree to ~1e-7. Adam's first update is lr · g/(|g| + eps), ±lr
# wherever |g| ≫ eps; it amplifies rounding on the few entries with |g| near eps (measured: up
# to 5e-6 at hidden 64), so weights are compared to 1 % of the step lr = 0.01.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4
TARGET_RATIO = 3.0


@dataclasses.dataclass(frozen=True)
class Config:
    """One Adam step of `seeds` row-by-row MNIST classifiers per cell, Table 2's settings.

    Attributes:
        cells: the cells to time, names of `decaynet`'s registry (`lstm`, `decay`); one case each.
        hidden_size: the cell's width N (Table 2's MNIST rows: 32 and 64).
        seeds: networks stepped at once (JAX: one compiled step over the seeds, split over
            the devices by `memdyn.sweep_mesh_for`, one per core on the CPU, each stepping its
            seeds in a loop; also timed on one device, "jax-one-device"; PyTorch: a loop in
            Python).
        train: Table 2's optimiser (`decaynet.experiments.table2.Config.train`), one step per
            chunk: Adam, lr 0.01 (betas (0.9, 0.999) and eps 1e-8 on both sides), batch 64
            (images per seed and step).
        repeats: steady-state repeats per implementation.
        first_seed: PRNG seed of the first network (seeds `first_seed`, ..., as `memdyn.init_run`)
            and of the random batches.
    """

    cells: tuple[str, ...] = ("lstm", "decay")
    hidden_size: int = 64
    seeds: int = 16
    train: TrainConfig = TrainConfig(
        optimizer="adam", learning_rate=0.01, batch_size=64, chunk_steps=1
    )
    repeats: int = 10
    first_seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if not self.cells:
            raise ValueError("cells must name at least one cell")
        for cell in self.cells:
            check_in("cells", cell, CELLS)
        for field in ("hidden_size", "seeds", "repeats"):
            check_positive(field, getattr(self, field))
        if self.train.optimizer != "adam":  # the PyTorch peer is torch.optim.Adam
            raise ConfigError(f"train.optimizer must be 'adam'; got {self.train.optimizer!r}")

    def quick(self) -> Config:
        return dataclasses.replace(self, repeats=3)


def _seed_parameters(params: Any, seed_index: int) -> Any:
    return jax.tree.map(lambda leaf: np.asarray(leaf[seed_index]), params)


def torch_classifier(
    torch: ModuleType, cell: str, params: Any, device: str
) -> tuple[Any, list[Any]]:
    """A PyTorch classifier holding one seed's weights: `(logits(x), its trainable tensors)`.

    LSTM: `torch.nn.LSTM` (its second bias zero: the JAX cell's one bias is their sum); DecayNet:
    the weights as leaf tensors through `benchmarks._torch_decay.decay_states`. Both with an
    `nn.Linear` head.
    """
    head = torch.nn.Linear(params.head.weight.shape[1], CLASSES).to(device)
    with torch.no_grad():
        head.weight.copy_(torch_tensor(torch, params.head.weight, device))
        head.bias.copy_(torch_tensor(torch, params.head.bias, device))
    weights = {field: getattr(params.cell, field) for field in CELL_FIELDS}
    if cell == "lstm":
        inputs, hidden = weights["weight_input"].shape[1], weights["bias"].shape[0] // 4
        lstm = torch.nn.LSTM(inputs, hidden, batch_first=True).to(device)
        with torch.no_grad():
            lstm.weight_ih_l0.copy_(torch_tensor(torch, weights["weight_input"], device))
            lstm.weight_hh_l0.copy_(torch_tensor(torch, weights["weight_recurrent"], device))
            lstm.bias_ih_l0.copy_(torch_tensor(torch, weights["bias"], device))
            lstm.bias_hh_l0.zero_()
        return (lambda x: head(lstm(x)[0][:, -1])), [*lstm.parameters(), *head.parameters()]
    tensors = {
        field: torch_tensor(torch, value, device, requires_grad=True)
        for field, value in weights.items()
    }

    from benchmarks._torch_decay import decay_states  # imports torch: only where a peer runs

    def logits(x):
        states = decay_states(x, *tensors.values(), ROWS, False)
        return head(states[:, -1])

    return logits, [*tensors.values(), *head.parameters()]


def _torch_step(torch, logits, optimizer, x, y):
    optimizer.zero_grad()
    loss = torch.nn.functional.cross_entropy(logits(x), y)
    loss.backward()
    optimizer.step()
    return loss


def _time_torch(torch, cell, params, xs, ys, config, jax_step) -> tuple[Timing, dict[str, Any]]:
    """Time the loop over the seeds, then check one step of seed 0 against JAX's."""
    device = torch_device(torch)
    adam = lambda tensors: torch.optim.Adam(
        tensors, lr=config.train.learning_rate, eps=config.train.eps
    )
    batches = [
        (
            torch_tensor(torch, xs[s], device),
            torch.tensor(np.asarray(ys[s]), dtype=torch.long, device=device),
        )
        for s in range(config.seeds)
    ]
    peers = []
    for s in range(config.seeds):
        logits, tensors = torch_classifier(torch, cell, _seed_parameters(params, s), device)
        peers.append((logits, adam(tensors)))

    def step_all():
        return [
            _torch_step(torch, logits, optimizer, x, y)
            for (logits, optimizer), (x, y) in zip(peers, batches, strict=True)
        ]

    with flushed_denormals(torch):  # as XLA:CPU runs JAX: PyTorch's best
        timing = measure(step_all, repeats=config.repeats, wait=torch_wait(torch, device))
    logits, tensors = torch_classifier(torch, cell, _seed_parameters(params, 0), device)
    torch_loss = _torch_step(torch, logits, adam(tensors), *batches[0]).item()
    new_params, jax_losses = jax_step()
    initial, updated = _seed_parameters(params, 0), _seed_parameters(new_params, 0)
    expected = [updated.cell.weight_input, updated.cell.weight_recurrent, updated.cell.bias]
    if cell == "lstm":  # bias_hh starts at zero and takes the same Adam step as bias_ih
        expected.append(updated.cell.bias - initial.cell.bias)
    expected += [updated.head.weight, updated.head.bias]
    torch_weights = [tensor.detach().cpu().numpy() for tensor in tensors]
    differences = {
        "max_abs_diff_loss": abs(torch_loss - float(jax_losses[0])),
        "max_abs_diff_updated_weights": max(
            float(np.max(np.abs(t - e))) for t, e in zip(torch_weights, expected, strict=True)
        ),
    }
    within = (
        differences["max_abs_diff_loss"] <= LOSS_TOLERANCE
        and differences["max_abs_diff_updated_weights"] <= WEIGHT_TOLERANCE
    )
    agreement = {
        **differences,
        "seed_index": 0,
        "loss_tolerance": LOSS_TOLERANCE,
        "weight_tolerance": WEIGHT_TOLERANCE,
        "within_tolerance": within,
    }
    return timing, agreement


def measure_cell(cell: str, config: Config) -> dict[str, Any]:
    """One case: one step of every seed in JAX (one compiled step over them, on every device and
    on one) and in PyTorch."""
    train_config = config.train
    seeds = np.arange(config.first_seed, config.first_seed + config.seeds)
    data_key, label_key = jax.random.split(jax.random.key(config.first_seed))
    shape = (config.seeds, config.train.batch_size)
    with strict_float32():
        make = row_classifier(resolve_cell(cell), config.hidden_size, PyTorchInit())
        optimizer = train_config.make_optimizer()
        run_state, static = init_run(make, seeds, optimizer)
        xs = jax.random.uniform(data_key, (*shape, ROWS, PIXELS), jnp.float32)
        ys = jax.random.randint(label_key, shape, 0, CLASSES)
        # `train_chunk` gathers each seed's batch by index: seed s takes batch s.
        index = jnp.arange(config.seeds * config.train.batch_size).reshape(1, *shape)

        mesh = sweep_mesh_for(config.seeds)  # the seeds over every core (one device per core)

        def jax_step(mesh=mesh):
            params, _, _, losses, _ = train_chunk(
                run_state.params,
                run_state.opt_state,
                run_state.model_state,
                static,
                classifier_loss,
                optimizer,
                xs.reshape(-1, ROWS, PIXELS),
                ys.reshape(-1),
                index,
                mesh=mesh,
            )
            return params, losses[0]

        timings: dict[str, Timing | str] = {"jax": measure(jax_step, repeats=config.repeats)}
        if mesh is not None:  # and on one device (core), a loop over all seeds
            one = lambda: jax_step(None)
            timings["jax-one-device"] = measure(one, repeats=config.repeats)
        # One seed alone, on one device: what "seeds at the cost of seeds" is measured against.
        first = lambda leaf: leaf[:1]
        lone = jax.tree.map(first, (run_state.params, run_state.opt_state, run_state.model_state))

        def lone_step():
            arrays = (xs.reshape(-1, ROWS, PIXELS), ys.reshape(-1), index[:, :1])
            out = train_chunk(*lone, static, classifier_loss, optimizer, *arrays)
            return out[0], out[3][0]

        one_seed = measure(lone_step, repeats=config.repeats)
        case: dict[str, Any] = {
            "case": f"{cell}-{config.hidden_size}x{config.seeds}-seeds",
            "shape": {
                "cell": cell,
                "hidden_size": config.hidden_size,
                "seeds": config.seeds,
                "batch": config.train.batch_size,
                "time": ROWS,
                "input_size": PIXELS,
                "classes": CLASSES,
            },
            "jax_devices": 1 if mesh is None else mesh.devices.size,
            "one_seed": dataclasses.asdict(one_seed),
            # A step of all seeds in one-seed steps (issue 25's target on one device: <= 8 of 16).
            "in_one_seed_steps": {
                name: timing.median_s / one_seed.median_s
                for name, timing in timings.items()
                if isinstance(timing, Timing)
            },
            "dtype": str(xs.dtype),
            "optimizer": {"name": "adam", "learning_rate": config.train.learning_rate},
        }
        torch, reason = import_torch()
        if torch is None:
            timings["torch"] = reason
        else:
            timings["torch"], case["agreement"] = _time_torch(
                torch, cell, run_state.params, xs, ys, config, jax_step
            )
    case.update(compare(timings))
    case["seed_steps_per_s"] = {
        name: config.seeds / timing.median_s
        for name, timing in timings.items()
        if isinstance(timing, Timing)
    }
    ratio = case["median_ratio"].get("torch")
    case["target"] = {
        "throughput_ratio": TARGET_RATIO,
        "met": ratio is not None and ratio >= TARGET_RATIO,
    }
    text = "seed-steps/s: " + ", ".join(
        f"{name} {rate:.0f}" for name, rate in case["seed_steps_per_s"].items()
    )
    text += f"; one seed {1e3 * one_seed.median_s:.2f} ms, all seeds = " + ", ".join(
        f"{name} {steps:.1f}" for name, steps in case["in_one_seed_steps"].items()
    )
    text += " one-seed steps"
    if "agreement" in case:
        agreement = case["agreement"]
        verdict = "agree" if agreement["within_tolerance"] else "MISMATCH, times not comparable"
        text += (
            f"; seed 0 torch vs jax max|Δ| loss {agreement['max_abs_diff_loss']:.1e}, "
            f"weights {agreement['max_abs_diff_updated_weights']:.1e} ({verdict})"
        )
    case["summary"] = text
    return case


def run(config: Config) -> dict[str, Any]:
    """One case per cell: JAX and PyTorch timings of one step of all seeds, and their agreement."""
    return {"cases": [measure_cell(cell, config) for cell in config.cells]}


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("seeds",)))
