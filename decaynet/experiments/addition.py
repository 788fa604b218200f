"""`decaynet addition`: App. B's binary addition and Fig. 6's forget-gate time series.

An LSTM 2-32-1 and a DecayNet 2-32-1 (same task, same data order, same held-out set; `--cells`
names them through `decaynet._registry.CELLS`) are trained
by gradient descent (lr 0.1) until every digit of every held-out sum is right, or `max_steps`.
Then forget-gate dimensions 2, 12, 22 and 32 (1-based, as the paper counts) are traced over the 16
steps for two random held-out pairs and the paper's 8409 + 29882, and the forget-gate increases
`f_{t,j} > f_{t-1,j}` (t = 2..16, all 32 dimensions) are counted on every held-out sequence.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Annotated

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from decaynet._addition import (
    Adder,
    add,
    addition_batch,
    count_increases,
    held_out_operands,
    operand_limits,
    train_until_exact,
)
from decaynet._cells import DecayCell
from decaynet._initialisation import INITIALISATIONS
from decaynet._registry import CELLS, PAPER_CELLS, resolve_cell
from memdyn import ConfigError
from memdyn.internal import AtLeast, MinLength, NonNegative, OneOf, Positive, check_fields
from memlab import Experiment


@dataclasses.dataclass(frozen=True)
class Config:
    """Binary addition (App. B) and Fig. 6's forget-gate traces.

    Attributes:
        cells: the cells trained, one model each, names of `decaynet._registry.CELLS`: `lstm`,
            `decay` (paper: both).
        hidden_size: hidden units N of each cell (paper: 32).
        digits: binary digits per sequence, least significant first, i.e. the sequence length
            D; operands are kept small enough that the sum fits (paper: 16).
        learning_rate: plain gradient-descent step size (paper: 0.1).
        batch_size: fresh random training pairs per step (held-out pairs get zero weight).
        chunk_steps: GD steps between evaluations on the held-out sums; training stops after
            the first chunk with every held-out digit right.
        max_steps: GD steps at most per cell if the held-out sums are never all right.
        test_pairs: held-out operand pairs (1 in 64 of all pairs is held out) on which
            accuracy and forget-gate increases are measured; ≥ 1.
        init: weight initialisation, `paper` (§6.1: U(−1, 1) weights, zero biases) or
            `pytorch` (everything U(±1/√N)).
        clip_decrement: clip DecayNet's polar decrement (· + 3)/6 to [0, 1], which makes f
            monotone for any pre-activation; off is the paper's form. Only cells with a
            polar decrement (`decay`) use it.
        dims: forget-gate dimensions traced in Fig. 6, 1-based as the paper counts, each at
            most `hidden_size` (paper: 2, 12, 22, 32).
        random_pairs: random held-out pairs whose forget gates are traced besides
            `example_pair`.
        example_pair: the two operands of a traced example (paper: 8409 + 29882); empty means
            none, and a pair too large for `digits` is skipped.
        increase_tolerance: f_{t,j} > f_{t−1,j} + tolerance counts as a forget-gate
            increase; ≥ 0.
        seed: PRNG seed of the initial weights (the same for every cell), the training
            pairs, the held-out set and the random traced pairs.
    """

    cells: Annotated[tuple[str, ...], OneOf(CELLS), MinLength(1)] = PAPER_CELLS
    hidden_size: Annotated[int, AtLeast(1)] = 32
    digits: Annotated[int, AtLeast(1)] = 16
    learning_rate: Annotated[float, Positive] = 0.1
    batch_size: Annotated[int, AtLeast(1)] = 64
    chunk_steps: Annotated[int, AtLeast(1)] = 200
    max_steps: Annotated[int, AtLeast(1)] = 60_000
    test_pairs: Annotated[int, AtLeast(1)] = 2000
    init: Annotated[str, OneOf(INITIALISATIONS)] = "paper"
    clip_decrement: bool = False
    dims: Annotated[tuple[int, ...], AtLeast(1)] = (2, 12, 22, 32)
    random_pairs: int = 2
    example_pair: Annotated[tuple[int, ...], NonNegative] = (8409, 29882)
    increase_tolerance: Annotated[float, NonNegative] = 1e-6
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        if any(d > self.hidden_size for d in self.dims):
            raise ConfigError(f"dims must be 1-based dimensions <= hidden_size; got {self.dims}")
        if len(self.example_pair) not in (0, 2):
            raise ConfigError(f"example_pair must be two integers or none; got {self.example_pair}")

    def quick(self) -> Config:
        """Both cells on the same 16-digit task, capped at 4,000 steps and 500 held-out sums."""
        return dataclasses.replace(self, max_steps=4000, test_pairs=500)


def _example_pairs(config: Config, key) -> list[tuple[int, int]]:
    a, b = held_out_operands(key, config.random_pairs, config.digits)
    pairs = list(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    first, second = operand_limits(config.digits)
    if config.example_pair and config.example_pair[0] <= first and config.example_pair[1] <= second:
        pairs.append(tuple(config.example_pair))
    return pairs


def _summarise_increases(counts: np.ndarray, possible: int, forget: np.ndarray, tol: float) -> dict:
    jumps = np.diff(forget, axis=-2)
    jumps = jumps[jumps > tol]
    return {
        "per_sequence_mean": float(counts.mean()),
        "per_sequence_std": float(counts.std()),
        "per_sequence_min": int(counts.min()),
        "per_sequence_max": int(counts.max()),
        "possible_per_sequence": possible,
        "fraction_of_transitions": float(counts.mean() / possible),
        "mean_increase_size": float(jumps.mean()) if jumps.size else 0.0,
        "largest_increase": float(jumps.max()) if jumps.size else 0.0,
    }


def run(config: Config, out_dir: Path) -> dict:
    del out_dir
    key = jax.random.key(config.seed)
    init_key, data_key, test_key, example_key = jax.random.split(key, 4)
    test_a, test_b = held_out_operands(test_key, config.test_pairs, config.digits)
    test = addition_batch(test_a, test_b, config.digits)
    pairs = _example_pairs(config, example_key)
    pair_a = jnp.array([p[0] for p in pairs])
    pair_b = jnp.array([p[1] for p in pairs])
    examples = addition_batch(pair_a, pair_b, config.digits)
    dims = np.array(config.dims) - 1
    models = []
    for cell in config.cells:
        cell_class = resolve_cell(cell, "cells")
        # `clip_decrement` is DecayNet's option: it reaches the cells that have a polar decrement.
        options = (
            {"clip_decrement": config.clip_decrement} if issubclass(cell_class, DecayCell) else {}
        )
        model = Adder(
            cell_class,
            config.hidden_size,
            config.digits,
            init=INITIALISATIONS[config.init],
            key=init_key,
            **options,
        )
        start = time.perf_counter()
        model, history = train_until_exact(
            model,
            test,
            optimizer=optax.sgd(config.learning_rate),
            batch_size=config.batch_size,
            chunk_steps=config.chunk_steps,
            max_steps=config.max_steps,
            key=data_key,
        )
        seconds = time.perf_counter() - start
        if history.stopped_at is not None:
            warnings.warn(
                f"addition, {cell}: non-finite loss or gradient at step {history.stopped_at}; "
                "training stopped and kept the last good model, the step before's",
                stacklevel=2,
            )
        last = {name: values[-1] if values else None for name, values in history._asdict().items()
                if name != "stopped_at"}  # fmt: skip
        trajectory = eqx.filter_jit(jax.vmap(lambda x, m=model: m.trajectory(x)[1]))
        test_forget = np.asarray(trajectory(test.inputs).f)
        example_trajectory = trajectory(examples.inputs)
        tolerance = config.increase_tolerance
        counts = np.asarray(count_increases(test_forget, tolerance))
        plotted = np.asarray(count_increases(test_forget[..., dims], tolerance))
        example_counts = np.asarray(count_increases(np.asarray(example_trajectory.f), tolerance))
        predicted = np.asarray(add(model, pair_a, pair_b, config.digits))
        models.append(
            {
                "cell": cell,
                "model": model.cell.label,
                "reached_exact": last["digit_accuracy"] == 1.0,
                "steps": last["steps"] or 0,
                "stopped_at": history.stopped_at,
                "train_seconds": seconds,
                "history": history._asdict(),
                "test_digit_accuracy": last["digit_accuracy"],
                "test_sequence_accuracy": last["sequence_accuracy"],
                "increases": _summarise_increases(
                    counts, (config.digits - 1) * config.hidden_size, test_forget, tolerance
                ),
                "increases_plotted_dims": _summarise_increases(
                    plotted, (config.digits - 1) * len(dims), test_forget[..., dims], tolerance
                ),
                "examples": [
                    {
                        "a": int(a),
                        "b": int(b),
                        "sum": int(a + b),
                        "predicted_sum": int(p),
                        "forget": np.asarray(example_trajectory.f)[i][:, dims],
                        "increases": int(example_counts[i]),
                    }
                    for i, (a, b, p) in enumerate(zip(pair_a, pair_b, predicted, strict=True))
                ],
            }
        )
    return {"dims": list(config.dims), "test_pairs": config.test_pairs, "models": models}


def plot(result: dict):
    from decaynet.plots import forget_gate_figure

    return forget_gate_figure(result)


EXPERIMENT = Experiment(
    name="addition",
    help="App. B / Fig. 6: binary addition, forget-gate time series of an LSTM and a DecayNet",
    config=Config,
    run=run,
    plot=plot,
)
