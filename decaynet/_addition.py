"""The binary-addition task of App. B: an LSTM (or DecayNet) 2-32-1 adds two 16-digit numbers.

At step t the cell (any `AbstractGatedCell` class; the paper's is the LSTM) reads digit t of both
operands, least significant first, and emits digit t of the sum as `round(tanh(V q_t))` with a
learned `V` (1 × N, no bias). Operands are drawn with
`x1 ≤ round((2^16 - 1)/2) = 32768` and `x2 ≤ floor((2^16 - 1)/2) = 32767`, so the sum fits in 16
digits. Training is plain gradient descent (BPTT) with learning rate 0.1 (`optax.sgd(0.1)`, the
default `optimizer`) on the mean squared error between `tanh(V q_t)` and the target digit in
{0, 1} (the paper names no loss; this one keeps its output rule: the rounded output is right
exactly when the error is below 1/2).

Held-out sums are a fixed hash-defined 1/64 of all operand pairs (`is_held_out`): training never
sees them (their loss weight is zero) and evaluation draws only from them.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from decaynet._cells import AbstractGatedCell, LSTMCell, Trajectory, build_cell
from decaynet._initialisation import AbstractInit, PaperInit
from memdyn import (
    AbstractNonFinitePolicy,
    ConfigError,
    Freeze,
    NonFiniteStep,
    check_finite,
    optimizer_step,
    partition_parameters,
    run_chunks,
    scan_steps,
)
from memdyn.internal import check_optimizer, check_positive, check_shape, progress

HELD_OUT_FRACTION_BITS = 6  # one pair in 2^6 is held out


def operand_limits(digits: int) -> tuple[int, int]:
    """`(round((2^d - 1)/2), floor((2^d - 1)/2))`: the largest operands with a d-digit sum."""
    top = 2**digits - 1
    return (top + 1) // 2, top // 2


def to_bits(n: Int[Array, "*batch"], digits: int) -> Int[Array, "*batch digits"]:
    """Binary digits of `n`, least significant first."""
    return (jnp.asarray(n)[..., None] >> jnp.arange(digits)) & 1


def from_bits(bits: Int[Array, "*batch digits"]) -> Int[Array, "*batch"]:
    """The integer whose digits (least significant first) are `bits`."""
    return jnp.sum(jnp.asarray(bits) << jnp.arange(bits.shape[-1]), axis=-1)


def is_held_out(a: Int[Array, "*batch"], b: Int[Array, "*batch"]) -> Array:
    """Whether the pair `(a, b)` belongs to the held-out set (a fixed 32-bit integer hash)."""
    a = jnp.asarray(a, dtype=jnp.uint32)
    b = jnp.asarray(b, dtype=jnp.uint32)
    h = a * jnp.uint32(0x9E3779B1) ^ (b * jnp.uint32(0x85EBCA77) + jnp.uint32(0x165667B1))
    h = h ^ (h >> 15)
    h = h * jnp.uint32(0x2C1B3C6D)
    h = h ^ (h >> 12)
    return (h & jnp.uint32(2**HELD_OUT_FRACTION_BITS - 1)) == 0


def sample_operands(key: PRNGKeyArray, count: int, digits: int) -> tuple[Array, Array]:
    """`count` uniform operand pairs within `operand_limits(digits)`."""
    first, second = operand_limits(digits)
    key_a, key_b = jax.random.split(key)
    a = jax.random.randint(key_a, (count,), 0, first + 1)
    b = jax.random.randint(key_b, (count,), 0, second + 1)
    return a, b


def held_out_operands(key: PRNGKeyArray, count: int, digits: int) -> tuple[Array, Array]:
    """`count` distinct pairs drawn uniformly from the held-out set.

    Small operand spaces are enumerated; large ones (16 digits: 2^31 pairs) are rejection-sampled.
    """
    check_positive("count", count)
    first, second = operand_limits(digits)
    if (first + 1) * (second + 1) <= 2**22:
        a, b = (x.ravel() for x in jnp.meshgrid(jnp.arange(first + 1), jnp.arange(second + 1)))
        keep = np.flatnonzero(np.asarray(is_held_out(a, b)))
        if count > keep.size:
            raise ConfigError(
                f"count={count} exceeds the {keep.size} held-out pairs of {digits} digits"
            )
        chosen = np.asarray(jax.random.permutation(key, keep))[:count]
        return a[chosen], b[chosen]
    pairs: dict[tuple[int, int], None] = {}
    while len(pairs) < count:
        key, sub = jax.random.split(key)
        a, b = sample_operands(sub, 2**HELD_OUT_FRACTION_BITS * 2 * count, digits)
        keep = np.asarray(is_held_out(a, b))
        for pair in zip(np.asarray(a)[keep].tolist(), np.asarray(b)[keep].tolist(), strict=True):
            pairs.setdefault(tuple(pair), None)
    chosen = np.array(list(pairs)[:count])
    return jnp.asarray(chosen[:, 0]), jnp.asarray(chosen[:, 1])


class AdditionBatch(NamedTuple):
    inputs: Float[Array, "batch digits 2"]
    targets: Float[Array, "batch digits"]


def addition_batch(a: Int[Array, " batch"], b: Int[Array, " batch"], digits: int) -> AdditionBatch:
    """Inputs `(x1_t, x2_t)` and target digits of `x1 + x2`, least significant first."""
    inputs = jnp.stack([to_bits(a, digits), to_bits(b, digits)], axis=-1).astype(float)
    return AdditionBatch(inputs, to_bits(a + b, digits).astype(float))


class Adder(eqx.Module):
    """A cell with the readout `y_t = tanh(V q_t)`; the predicted digit is `round(y_t)`.

    `cell` is a cell class, built for sequences of `digits` steps with `init` (an `AbstractInit`,
    which also draws `V` as a weight: `U(−1, 1)` under `PaperInit()`, the default) and the extra
    `cell_options` (e.g. `clip_decrement=True` for `DecayCell`).
    """

    cell: AbstractGatedCell
    readout: Float[Array, " hidden"]

    def __init__(
        self,
        cell: type[AbstractGatedCell] = LSTMCell,
        hidden_size: int = 32,
        digits: int = 16,
        *,
        init: AbstractInit = PaperInit(),  # noqa: B008 (immutable, as Diffrax does)
        key: PRNGKeyArray,
        **cell_options,
    ):
        cell_key, readout_key = jax.random.split(key)
        self.cell = build_cell(
            cell, 2, hidden_size, sequence_length=digits, init=init, key=cell_key, **cell_options
        )
        self.readout = init.weight(readout_key, (hidden_size,), hidden_size)

    def trajectory(
        self, inputs: Float[Array, "digits 2"]
    ) -> tuple[Float[Array, " digits"], Trajectory]:
        """Outputs `tanh(V q_t)` for one pair, and the cell's trajectory `(q, s, f, p)`."""
        _, trajectory = self.cell.scan(inputs)
        return jnp.tanh(trajectory.q @ self.readout), trajectory

    def __call__(self, inputs: Float[Array, "digits 2"]) -> Float[Array, " digits"]:
        return self.trajectory(inputs)[0]


def predict_digits(outputs: Float[Array, "*batch digits"]) -> Int[Array, "*batch digits"]:
    """The paper's output rule `round(tanh(V q_t))` (values in {-1, 0, 1})."""
    return jnp.round(outputs).astype(int)


def add(model: Adder, a: Int[Array, " batch"], b: Int[Array, " batch"], digits: int) -> Array:
    """The model's sums of the pairs, read from its rounded output digits."""
    check_shape("a", a, (None,))
    check_shape("b", b, (a.shape[0],))
    batch = addition_batch(a, b, digits)
    digits_out = predict_digits(jax.vmap(model)(batch.inputs))
    return from_bits(jnp.clip(digits_out, 0, 1))


def loss(model: Adder, batch: AdditionBatch, weights: Float[Array, " batch"]) -> Float[Array, ""]:
    """Weighted mean over pairs of the mean squared digit error `(tanh(V q_t) - y_t)^2`."""
    errors = jnp.mean(jnp.square(jax.vmap(model)(batch.inputs) - batch.targets), axis=1)
    return jnp.sum(weights * errors) / jnp.maximum(jnp.sum(weights), 1.0)


def digit_accuracy(model: Adder, batch: AdditionBatch) -> tuple[Array, Array]:
    """Fraction of correct digits and fraction of fully correct sums."""
    correct = predict_digits(jax.vmap(model)(batch.inputs)) == batch.targets
    return jnp.mean(correct), jnp.mean(jnp.all(correct, axis=1))


def make_train_chunk(optimizer: optax.GradientTransformation, batch_size: int, digits: int):
    """A jitted chunk of `optimizer`'s steps on fresh training pairs, one step per key.

    Returns `chunk(model, opt_state, keys) -> (model, opt_state, losses, finite)` (a
    `memdyn.scan_steps` of `memdyn.optimizer_step`: each step's loss before its update and
    whether that loss and its gradient were finite); held-out pairs drawn by chance get zero
    weight. `optimizer` is an Optax transformation (a learning rate or a name raises
    `TypeError`).
    """
    check_optimizer(optimizer)
    check_positive("batch_size", batch_size)

    @eqx.filter_jit
    def chunk(model, opt_state, keys):
        params, static = partition_parameters(model)

        def step(carry, key):
            params, opt_state = carry
            a, b = sample_operands(key, batch_size, digits)
            batch = addition_batch(a, b, digits)
            weights = 1.0 - is_held_out(a, b).astype(float)
            params, opt_state, value, finite = optimizer_step(
                loss, params, static, optimizer, opt_state, batch, weights
            )
            return (params, opt_state), (value, finite)

        (params, opt_state), values, finite = scan_steps(step, (params, opt_state), keys)
        return eqx.combine(params, static), opt_state, values, finite

    return chunk


def count_increases(
    forget: Float[Array, "*batch time hidden"], tolerance: float = 1e-6
) -> Int[Array, "*batch"]:
    """Number of `(t, j)` with `f_{t,j} > f_{t-1,j} + tolerance` per sequence (t = 2..D)."""
    check_finite("forget", forget)
    return jnp.sum(jnp.diff(forget, axis=-2) > tolerance, axis=(-2, -1))


class TrainingHistory(NamedTuple):
    """Per chunk: the step reached, the chunk's mean loss and the held-out accuracies.

    `stopped_at` is the first step (counted from 0) whose loss or gradient was non-finite:
    training stopped there (`memdyn.Freeze`) and kept the model of the step before, the last
    good one; the numbers recorded are those of the finite chunks before. It is `None` when
    every step was finite.
    """

    steps: list[int]
    loss: list[float]
    digit_accuracy: list[float]
    sequence_accuracy: list[float]
    stopped_at: int | None = None


def train_until_exact(
    model: Adder,
    test: AdditionBatch,
    *,
    optimizer: optax.GradientTransformation = optax.sgd(0.1),  # noqa: B008 (App. B's)
    batch_size: int = 64,
    chunk_steps: int = 200,
    max_steps: int = 40_000,
    policy: AbstractNonFinitePolicy = Freeze(),  # noqa: B008 (immutable, as Diffrax does)
    key: PRNGKeyArray,
) -> tuple[Adder, TrainingHistory]:
    """`optimizer` (App. B's gradient descent with step 0.1 by default) in chunks of
    `chunk_steps` until every held-out digit is right.

    Stops at the first chunk after which the digit accuracy on `test` is 1, or at `max_steps`
    (rounded up to whole chunks). A step whose loss or gradient is non-finite goes to `policy`
    (`memdyn.run_chunks`): with `memdyn.Freeze()`, the default, the last good model (that of the
    step before) is returned and `TrainingHistory.stopped_at` names the step; `memdyn.Stop()`
    raises `memdyn.TrainingStopped` instead.
    """
    check_positive("chunk_steps", chunk_steps)
    check_positive("max_steps", max_steps)
    digits = test.inputs.shape[1]
    chunk = make_train_chunk(optimizer, batch_size, digits)
    opt_state = optimizer.init(partition_parameters(model)[0])
    evaluate = eqx.filter_jit(digit_accuracy)
    history = TrainingHistory([], [], [], [])
    chunks = -(-max_steps // chunk_steps)
    desc = f"addition {model.cell.label}"
    keys = (
        jax.random.split(jax.random.fold_in(key, index), chunk_steps)
        for index in progress(range(chunks), desc=desc)
    )

    def advance(state, keys):
        model, opt_state, losses, finite = chunk(*state, keys)
        return (model, opt_state), losses, finite

    def after_chunk(state, losses, steps):
        digit, sequence = evaluate(state[0], test)
        history.steps.append(steps)
        history.loss.append(float(jnp.mean(losses)))
        history.digit_accuracy.append(float(digit))
        history.sequence_accuracy.append(float(sequence))
        return history.digit_accuracy[-1] == 1.0

    def message(failure: NonFiniteStep) -> str:
        return (
            f"{desc}: non-finite loss or gradient at step {failure.step}; training stopped. "
            "Lower the learning rate"
        )

    (model, _), failure = run_chunks(
        advance, (model, opt_state), keys, policy=policy, message=message,
        after_chunk=after_chunk,
    )  # fmt: skip
    return model, history._replace(stopped_at=None if failure is None else failure.step)
