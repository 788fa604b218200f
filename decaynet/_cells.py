"""The LSTM cell (System 1) and the DecayNet cell (System 2) of the paper, in Equinox.

Both cells keep the four gates fused in one weight matrix, in PyTorch's order (input, forget,
cell input, output), so that `z = W x_t + W_R q_{t-1} + b` is two matrix products per step. A
cell's `__call__` is one step of one example; `scan` runs a whole sequence with `lax.scan`, with the
input projection `W x_t + b` hoisted out of the loop (one matrix product over all time steps), and
returns the final state and the full trajectory `(q, s, f, p)` for analysis.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from memdyn._validate import check_in, check_positive

INITIALISATIONS = ("paper", "pytorch")


class CellState(NamedTuple):
    """The recurrent state: hidden `q`, cell state `s` and (DecayNet only) forget polar `p`."""

    q: Float[Array, " hidden"]
    s: Float[Array, " hidden"]
    p: Float[Array, " hidden"] | None = None


class Trajectory(NamedTuple):
    """Per-step values `q_t, s_t, f_t` (and `p_t` for DecayNet), for t = 1..D, stacked on time."""

    q: Float[Array, "time hidden"]
    s: Float[Array, "time hidden"]
    f: Float[Array, "time hidden"]
    p: Float[Array, "time hidden"] | None = None


def forget_polar_activation(p: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """Φ of System 2: `1` for `p > π/2`, `0` for `p < 0`, `sin(p)` in between.

    `sin(clip(p, 0, π/2))` has the same values and a zero derivative outside `[0, π/2]`.
    """
    return jnp.sin(jnp.clip(p, 0.0, math.pi / 2))


def _initialise(init: str, shape: tuple[int, ...], hidden_size: int, key, *, bias: bool) -> Array:
    """Paper (§6.1): weights `U(-1, 1)`, biases zero. PyTorch: everything `U(-1/√N, 1/√N)`."""
    if init == "paper":
        if bias:
            return jnp.zeros(shape, dtype=float)
        return jax.random.uniform(key, shape, dtype=float, minval=-1.0, maxval=1.0)
    bound = 1.0 / math.sqrt(hidden_size)
    return jax.random.uniform(key, shape, dtype=float, minval=-bound, maxval=bound)


class _GatedCell(eqx.Module):
    """What both cells share: fused gate weights (`gates = 4 · hidden`), all but the forget gate."""

    weight_input: Float[Array, "gates input"]
    weight_recurrent: Float[Array, "gates hidden"]
    bias: Float[Array, " gates"]
    input_size: int = eqx.field(static=True)
    hidden_size: int = eqx.field(static=True)

    def _init_weights(self, input_size: int, hidden_size: int, init: str, key: PRNGKeyArray):
        check_in("init", init, INITIALISATIONS)
        check_positive("input_size", input_size)
        check_positive("hidden_size", hidden_size)
        input_key, recurrent_key, bias_key = jax.random.split(key, 3)
        gates = 4 * hidden_size
        self.weight_input = _initialise(
            init, (gates, input_size), hidden_size, input_key, bias=False
        )
        self.weight_recurrent = _initialise(
            init, (gates, hidden_size), hidden_size, recurrent_key, bias=False
        )
        self.bias = _initialise(init, (gates,), hidden_size, bias_key, bias=True)
        self.input_size = input_size
        self.hidden_size = hidden_size

    def initial_state(self) -> CellState:
        raise NotImplementedError

    def forget_gate(
        self, preactivation: Float[Array, " hidden"], p: Float[Array, " hidden"] | None
    ) -> tuple[Float[Array, " hidden"], Float[Array, " hidden"] | None]:
        """`(f_t, p_t)` from the forget gate's pre-activation `W_F x_t + W_RF q_{t-1} + b_F`."""
        raise NotImplementedError

    def memory(
        self, z: Float[Array, " gates"], state: CellState
    ) -> tuple[CellState, Float[Array, " hidden"], Float[Array, " hidden"]]:
        """The gates and the cell-state update from `z = W x_t + W_R q_{t-1} + b`.

        Returns the new state with `q` still the previous one, the forget gate `f_t` and the output
        gate `o_t`; `transition` (or a normalised variant) then forms `q_t` from `o_t` and `s_t`.
        """
        z_input, z_forget, z_cell, z_output = jnp.split(z, 4)
        f, p = self.forget_gate(z_forget, state.p)
        s = f * state.s + jax.nn.sigmoid(z_input) * jnp.tanh(z_cell)
        return CellState(state.q, s, p), f, jax.nn.sigmoid(z_output)

    def transition(
        self, z: Float[Array, " gates"], state: CellState
    ) -> tuple[CellState, Float[Array, " hidden"]]:
        """One step from the summed pre-activations: the new state and the forget gate `f_t`."""
        new, f, o = self.memory(z, state)
        return new._replace(q=o * jnp.tanh(new.s)), f

    def __call__(self, x: Float[Array, " input"], state: CellState) -> CellState:
        """One step of one example: `x_t, (q, s[, p])_{t-1} -> (q, s[, p])_t`."""
        z = self.weight_input @ x + self.weight_recurrent @ state.q + self.bias
        return self.transition(z, state)[0]

    def scan(
        self, xs: Float[Array, "time input"], state: CellState | None = None, *, unroll: int = 1
    ) -> tuple[CellState, Trajectory]:
        """Run a whole sequence; returns the final state and the trajectory of `(q, s, f, p)`.

        The input projection `W x_t + b` of every step is one matrix product before the loop.
        """
        if state is None:
            state = self.initial_state()
        projected = xs @ self.weight_input.T + self.bias

        def step(state, u):
            new, f = self.transition(u + self.weight_recurrent @ state.q, state)
            return new, Trajectory(new.q, new.s, f, new.p)

        return jax.lax.scan(step, state, projected, unroll=unroll)


class LSTMCell(_GatedCell):
    """System 1: `f, i, o = σ(·)`, `a = tanh(·)`, `s_t = f ⊙ s_{t-1} + i ⊙ a`, `q_t = o tanh(s_t)`.

    Gate order in the fused weights is PyTorch's `(i, f, a, o)`; one bias vector (PyTorch's
    `bias_ih + bias_hh`), so the cell has `4N(M + N) + 4N` parameters.
    """

    def __init__(
        self, input_size: int, hidden_size: int, *, init: str = "paper", key: PRNGKeyArray
    ):
        self._init_weights(input_size, hidden_size, init, key)

    def initial_state(self) -> CellState:
        zeros = jnp.zeros(self.hidden_size, dtype=self.bias.dtype)
        return CellState(zeros, zeros)

    def forget_gate(self, preactivation, p):
        return jax.nn.sigmoid(preactivation), p


class DecayCell(_GatedCell):
    """System 2, DecayNet: the LSTM with its forget gate replaced by a decaying forget polar.

    `p_0 = π/2`, `p_t = p_{t-1} - (π / 2D) · (W_F x_t + W_RF q_{t-1} + b_F + 3) / 6`,
    `f_t = Φ(p_t)` (see `forget_polar_activation`), so `f_0 = Φ(p_0) = 1`. The paper assumes the
    pre-activation stays in `[-3, 3]`, so each step removes between 0 and `π/2D` and over `D` steps
    at most `π/2`: `p_D ∈ [0, π/2]` and `f` never increases. Outside that range it can increase;
    `clip_decrement=True` clips `(· + 3)/6` to `[0, 1]`, which guarantees the monotone decay for any
    input. The cell has exactly the LSTM's parameters; the forget weights feed the decrement.

    The submission's text is not self-consistent here (it also writes the rate as
    `(2/6)(z + 3) ∈ [0, 2]` and a total loss of up to π); this follows its stated design, "from
    `p_0 = π/2` at most `π/2D` is lost per step", so that `f_D = 1` and `f_D = 0` are the extremes.
    """

    sequence_length: int = eqx.field(static=True)
    clip_decrement: bool = eqx.field(static=True)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        sequence_length: int,
        clip_decrement: bool = False,
        init: str = "paper",
        key: PRNGKeyArray,
    ):
        check_positive("sequence_length", sequence_length)
        self._init_weights(input_size, hidden_size, init, key)
        self.sequence_length = sequence_length
        self.clip_decrement = clip_decrement

    def initial_state(self) -> CellState:
        zeros = jnp.zeros(self.hidden_size, dtype=self.bias.dtype)
        return CellState(zeros, zeros, jnp.full_like(zeros, math.pi / 2))

    def decrement(self, preactivation: Float[Array, " hidden"]) -> Float[Array, " hidden"]:
        """`(π / 2D) · (z + 3) / 6`, with `(z + 3)/6` clipped to `[0, 1]` if `clip_decrement`."""
        rate = (preactivation + 3.0) / 6.0
        if self.clip_decrement:
            rate = jnp.clip(rate, 0.0, 1.0)
        return (math.pi / (2 * self.sequence_length)) * rate

    def forget_gate(self, preactivation, p):
        p = p - self.decrement(preactivation)
        return forget_polar_activation(p), p


def make_cell(
    cell: str,
    input_size: int,
    hidden_size: int,
    *,
    sequence_length: int,
    clip_decrement: bool = False,
    init: str = "paper",
    key: PRNGKeyArray,
) -> LSTMCell | DecayCell:
    """Build `"lstm"` or `"decay"`; `sequence_length` and `clip_decrement` only matter for decay."""
    check_in("cell", cell, ("lstm", "decay"))
    if cell == "lstm":
        return LSTMCell(input_size, hidden_size, init=init, key=key)
    return DecayCell(
        input_size,
        hidden_size,
        sequence_length=sequence_length,
        clip_decrement=clip_decrement,
        init=init,
        key=key,
    )
