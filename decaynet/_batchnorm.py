"""Recurrent batch normalisation (Cooijmans et al., 2016, eqs. 6-8) for both cells.

    z_t = BN(W x_t; γ_x, 0) + BN(W_R q_{t-1}; γ_R, 0) + b
    s_t = f_t ⊙ s_{t-1} + i_t ⊙ a_t                    (or DecayNet's forget gate, from z_t)
    q_t = o_t ⊙ tanh(BN(s_t; γ_s, β_s))

γ's start at 0.1, β_s at 0 (the gate bias `b` plays the part of the other two β's). In training
the statistics are those of the batch at each time step (a named `vmap` axis, as
`eqx.nn.BatchNorm`); evaluation uses per-time-step population statistics: exponential moving
averages of the training batches' statistics, zero-initialised and debiased as Adam debiases its
moments. Variances are the biased (population) batch variances.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from decaynet._cells import CellState, DecayCell, LSTMCell, Trajectory

GAMMA_INIT = 0.1


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


def batch_moments(x: Float[Array, "*shape"], axis_name: str) -> tuple[Array, Array]:
    """Mean and biased variance of `x` over the named batch axis of an enclosing `vmap`."""
    mean = jax.lax.pmean(x, axis_name)
    var = jax.lax.pmean(jnp.square(x - mean), axis_name)
    return mean, var


def normalise(x, mean, var, gamma, beta=0.0, eps: float = 1e-5):
    """`γ (x - mean) / sqrt(var + eps) + β`."""
    return gamma * (x - mean) * jax.lax.rsqrt(var + eps) + beta


class RecurrentBatchNorm(eqx.Module):
    """The learned scales, the shift of the cell state, and the running per-step statistics."""

    gamma_input: Float[Array, " gates"]
    gamma_recurrent: Float[Array, " gates"]
    gamma_cell: Float[Array, " hidden"]
    beta_cell: Float[Array, " hidden"]
    running: eqx.nn.StateIndex
    momentum: float = eqx.field(static=True)
    eps: float = eqx.field(static=True)

    def __init__(
        self, hidden_size: int, sequence_length: int, *, momentum: float = 0.9, eps: float = 1e-5
    ):
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
        self.momentum = momentum
        self.eps = eps

    def population_moments(self, state: eqx.nn.State) -> Moments:
        """The debiased running averages used in evaluation (zero before any training batch)."""
        running = state.get(self.running)
        scale = jnp.where(running.count == 0, 1.0, 1.0 - self.momentum**running.count)
        return jax.tree_util.tree_map(lambda a: a / scale, running.average)

    def scan(
        self,
        cell: LSTMCell | DecayCell,
        xs: Float[Array, "time input"],
        state: eqx.nn.State,
        *,
        inference: bool,
        axis_name: str = "batch",
    ) -> tuple[CellState, Trajectory, eqx.nn.State]:
        """Run `cell` over one example's sequence with recurrent batch normalisation.

        Training (`inference=False`) must run under `vmap(..., axis_name=axis_name)`; it uses the
        batch's statistics and returns the state with the running averages updated.
        """
        population = self.population_moments(state)
        projected = xs @ cell.weight_input.T
        if inference:
            input_mean, input_var = population.input_mean, population.input_var
        else:
            input_mean, input_var = batch_moments(projected, axis_name)
        projected = normalise(projected, input_mean, input_var, self.gamma_input, eps=self.eps)
        projected = projected + cell.bias

        def step(carry, inputs):
            u, t = inputs
            recurrent = cell.weight_recurrent @ carry.q
            if inference:
                recurrent_moments = (population.recurrent_mean[t], population.recurrent_var[t])
            else:
                recurrent_moments = batch_moments(recurrent, axis_name)
            z = u + normalise(recurrent, *recurrent_moments, self.gamma_recurrent, eps=self.eps)
            new, f, o = cell.memory(z, carry)
            if inference:
                cell_moments = (population.cell_mean[t], population.cell_var[t])
            else:
                cell_moments = batch_moments(new.s, axis_name)
            s_hat = normalise(new.s, *cell_moments, self.gamma_cell, self.beta_cell, self.eps)
            new = new._replace(q=o * jnp.tanh(s_hat))
            return new, (Trajectory(new.q, new.s, f, new.p), recurrent_moments, cell_moments)

        times = jnp.arange(xs.shape[0])
        final, (trajectory, recurrent_moments, cell_moments) = jax.lax.scan(
            step, cell.initial_state(), (projected, times)
        )
        if not inference:
            batch = Moments(input_mean, input_var, *recurrent_moments, *cell_moments)
            running = state.get(self.running)
            average = jax.tree_util.tree_map(
                lambda old, new: self.momentum * old + (1.0 - self.momentum) * new,
                running.average,
                batch,
            )
            state = state.set(self.running, RunningMoments(running.count + 1, average))
        return final, trajectory, state
