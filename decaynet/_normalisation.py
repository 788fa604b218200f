"""Normalisations of a gated cell's pre-activations and cell state, plugged into `scan_cell`.

A normalisation `N` acts at three sites of one step of System 1 (or 2):

    z_t = N_x(W x_t) + N_R(W_R q_{t-1}) + b
    q_t = o_t ⊙ tanh(N_s(s_t))

- `NoNormalisation`: the identity at all three sites (the paper's plain cells).
- `RecurrentBatchNorm`: Cooijmans et al. (2016), eqs. 6-8, the "RBN" of §6.1.
- `LayerNormalisation`: layer norm on `W x` and on `W_R q` (App. D's optimiser network).

A normalisation may keep statistics in the model state (`eqx.nn.State`), as `eqx.nn.BatchNorm`
does. `scan_cell` asks it once per batch for the `statistics` its steps read, calls every site at
every step for one example (mapped over the batch under the name `batch_axis()`, so that a site
can take moments over the batch) with the time step, stacks what each site observed (the same for
the whole batch), and after a training batch hands the observations to `update`, which returns
the new model state. Stateless normalisations keep the defaults: no statistics, the state
unchanged.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from memdyn.internal import check_count, check_positive

GAMMA_INIT = 0.1


class Observations(NamedTuple):
    """What the three sites observed over one batch, each stacked over time. Empty (`None`) for
    stateless normalisations."""

    input: PyTree
    recurrent: PyTree
    cell: PyTree


class AbstractNormalisation(eqx.Module):
    """`N_x`, `N_R` and `N_s` of one step; subclass and implement the three `normalise_*`.

    Each site returns the normalised array and what it observed (any pytree, `None` if nothing).
    A normalisation with running statistics also overrides `statistics` and `update`.
    """

    def check_length(self, num_steps: int) -> None:
        """Raise `ValueError` unless sequences of `num_steps` steps can be normalised; by default
        any length. Called by `scan_cell` at trace time."""
        del num_steps

    def batch_axis(self) -> Hashable | None:
        """The name under which `scan_cell` maps the sites over the batch, for normalisations
        whose sites take moments over it (`jax.lax.pmean(x, name)`); by default `None`."""
        return None

    def statistics(self, state: eqx.nn.State | None, *, inference: bool) -> PyTree:
        """What the steps of one sequence read from the model state; by default nothing."""
        del state, inference
        return None

    @abc.abstractmethod
    def normalise_input(
        self, projected: Float[Array, " gates"], time: Int[Array, ""], statistics: PyTree
    ) -> tuple[Float[Array, " gates"], PyTree]:
        """`N_x(W x_t)` at step `time` (counted from 0)."""

    @abc.abstractmethod
    def normalise_recurrent(
        self, recurrent: Float[Array, " gates"], time: Int[Array, ""], statistics: PyTree
    ) -> tuple[Float[Array, " gates"], PyTree]:
        """`N_R(W_R q_{t-1})` at step `time` (counted from 0)."""

    @abc.abstractmethod
    def normalise_cell(
        self, cell_state: Float[Array, " hidden"], time: Int[Array, ""], statistics: PyTree
    ) -> tuple[Float[Array, " hidden"], PyTree]:
        """`N_s(s_t)` at step `time`, before the `tanh` of the hidden state."""

    def update(self, state: eqx.nn.State | None, observed: Observations) -> eqx.nn.State | None:
        """The model state after a training sequence; by default unchanged."""
        del observed
        return state


class NoNormalisation(AbstractNormalisation):
    """The identity at every site: `z_t = W x_t + W_R q_{t-1} + b`, `q_t = o_t ⊙ tanh(s_t)`."""

    def normalise_input(self, projected, time, statistics):
        return projected, None

    def normalise_recurrent(self, recurrent, time, statistics):
        return recurrent, None

    def normalise_cell(self, cell_state, time, statistics):
        return cell_state, None


class LayerNormalisation(AbstractNormalisation):
    """Layer norm (Ba et al., 2016) on `W x_t` and on `W_R q_{t-1}`, each over its `4N` gate
    pre-activations with its own learned scale and shift; the cell state is not normalised.

    App. D's optimiser network: `z_t = LN(W x_t) + LN(W_R q_{t-1}) + b`.
    """

    input_norm: eqx.nn.LayerNorm
    recurrent_norm: eqx.nn.LayerNorm

    def __init__(self, hidden_size: int, *, eps: float = 1e-5):
        check_count("hidden_size", hidden_size)
        check_positive("eps", eps)
        self.input_norm = eqx.nn.LayerNorm(4 * hidden_size, eps=eps)
        self.recurrent_norm = eqx.nn.LayerNorm(4 * hidden_size, eps=eps)

    def normalise_input(self, projected, time, statistics):
        return self.input_norm(projected), None

    def normalise_recurrent(self, recurrent, time, statistics):
        return self.recurrent_norm(recurrent), None

    def normalise_cell(self, cell_state, time, statistics):
        return cell_state, None


class Moments(NamedTuple):
    """Per-time-step mean and variance of the three normalised quantities."""

    input_mean: Float[Array, "time gates"]
    input_var: Float[Array, "time gates"]
    recurrent_mean: Float[Array, "time gates"]
    recurrent_var: Float[Array, "time gates"]
    cell_mean: Float[Array, "time hidden"]
    cell_var: Float[Array, "time hidden"]


class RunningMoments(NamedTuple):
    """Exponential moving averages (not yet debiased) and the number of batches averaged."""

    count: Int[Array, ""]
    average: Moments


def batch_moments(x: Float[Array, "*shape"], axis_name: Hashable) -> tuple[Array, Array]:
    """Mean and biased variance of `x` over the named batch axis of an enclosing `vmap`."""
    mean = jax.lax.pmean(x, axis_name)
    var = jax.lax.pmean(jnp.square(x - mean), axis_name)
    return mean, var


def normalise(x, mean, var, gamma, beta=0.0, eps: float = 1e-5):
    """`γ (x - mean) / sqrt(var + eps) + β`."""
    return gamma * (x - mean) * jax.lax.rsqrt(var + eps) + beta


class RecurrentBatchNorm(AbstractNormalisation):
    """Recurrent batch normalisation (Cooijmans et al., 2016, eqs. 6-8):

        z_t = BN(W x_t; γ_x, 0) + BN(W_R q_{t-1}; γ_R, 0) + b
        q_t = o_t ⊙ tanh(BN(s_t; γ_s, β_s))

    γ's start at 0.1, β_s at 0 (the gate bias `b` plays the part of the other two β's). In
    training the statistics are those of the batch at each time step, over the named `vmap` axis
    `axis_name` (as `eqx.nn.BatchNorm`); evaluation uses per-time-step population statistics:
    exponential moving averages of the training batches' statistics, zero-initialised and
    debiased as Adam debiases its moments. Variances are the biased (population) batch variances.
    Build the model with `eqx.nn.make_with_state` so that the state holds the running averages.
    """

    gamma_input: Float[Array, " gates"]
    gamma_recurrent: Float[Array, " gates"]
    gamma_cell: Float[Array, " hidden"]
    beta_cell: Float[Array, " hidden"]
    running: eqx.nn.StateIndex
    sequence_length: int = eqx.field(static=True)
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)
    axis_name: Hashable = eqx.field(static=True)

    def __init__(
        self,
        hidden_size: int,
        sequence_length: int,
        *,
        momentum: float = 0.9,
        eps: float = 1e-5,
        axis_name: Hashable = "batch",
    ):
        check_count("hidden_size", hidden_size)
        check_count("sequence_length", sequence_length)
        check_positive("eps", eps)
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"momentum must be in (0, 1); got {momentum!r}")
        gates = 4 * hidden_size
        self.gamma_input = jnp.full(gates, GAMMA_INIT, dtype=float)
        self.gamma_recurrent = jnp.full(gates, GAMMA_INIT, dtype=float)
        self.gamma_cell = jnp.full(hidden_size, GAMMA_INIT, dtype=float)
        self.beta_cell = jnp.zeros(hidden_size, dtype=float)
        wide = jnp.zeros((sequence_length, gates), dtype=float)
        narrow = jnp.zeros((sequence_length, hidden_size), dtype=float)
        moments = Moments(wide, wide, wide, wide, narrow, narrow)
        self.running = eqx.nn.StateIndex(RunningMoments(jnp.array(0), moments))
        self.sequence_length = sequence_length
        self.momentum = momentum
        self.eps = eps
        self.axis_name = axis_name

    def batch_axis(self) -> Hashable:
        return self.axis_name

    def check_length(self, num_steps: int) -> None:
        """Exactly the `sequence_length` steps it keeps statistics for."""
        if num_steps != self.sequence_length:
            raise ValueError(
                f"xs has {num_steps} steps but this RecurrentBatchNorm keeps statistics for "
                f"sequence_length = {self.sequence_length}; build it with sequence_length = "
                f"{num_steps}"
            )

    def _running(self, state: eqx.nn.State | None) -> RunningMoments:
        if state is None:
            raise ValueError(
                "state: recurrent batch normalisation keeps its running statistics in the model "
                "state; build the model with eqx.nn.make_with_state and pass its state"
            )
        return state.get(self.running)

    def population_moments(self, state: eqx.nn.State) -> Moments:
        """The debiased running averages used in evaluation (zero before any training batch)."""
        running = self._running(state)
        scale = jnp.where(running.count == 0, 1.0, 1.0 - self.momentum**running.count)
        return jax.tree_util.tree_map(lambda a: a / scale, running.average)

    def statistics(self, state, *, inference):
        """The population moments in inference; `None` (use the batch's) in training."""
        return self.population_moments(state) if inference else None

    def _normalise(self, x, population, gamma, beta=0.0) -> tuple[Array, tuple[Array, Array]]:
        moments = batch_moments(x, self.axis_name) if population is None else population
        return normalise(x, *moments, gamma, beta, self.eps), moments

    def normalise_input(self, projected, time, statistics):
        population = (
            None
            if statistics is None
            else (statistics.input_mean[time], statistics.input_var[time])
        )
        return self._normalise(projected, population, self.gamma_input)

    def normalise_recurrent(self, recurrent, time, statistics):
        population = (
            None
            if statistics is None
            else (statistics.recurrent_mean[time], statistics.recurrent_var[time])
        )
        return self._normalise(recurrent, population, self.gamma_recurrent)

    def normalise_cell(self, cell_state, time, statistics):
        population = (
            None if statistics is None else (statistics.cell_mean[time], statistics.cell_var[time])
        )
        return self._normalise(cell_state, population, self.gamma_cell, self.beta_cell)

    def update(self, state, observed: Observations) -> eqx.nn.State:
        """Fold one training batch's per-step moments into the running averages."""
        running = self._running(state)
        batch = Moments(*observed.input, *observed.recurrent, *observed.cell)
        average = jax.tree_util.tree_map(
            lambda old, new: self.momentum * old + (1.0 - self.momentum) * new,
            running.average,
            batch,
        )
        return state.set(self.running, RunningMoments(running.count + 1, average))
