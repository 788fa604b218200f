"""Continuous-time RNN (Li et al., eq. 6): dh/dt = σ(W h + U x(t)), ŷ(t) = cᵀ h(t), h(0) = 0.

`ContinuousRNN` holds (W, U, c) with either a diagonal, stably parameterised W = −diag(f(v))
(`curse._parameterisation`) or a full, unrestricted W (Fig. 4(ii)); σ is the identity or tanh. Its
`__call__` maps one input sequence `xs` (piecewise constant on a grid of step Δ) to the outputs
ŷ_k = cᵀ h((k + 1)Δ), one per step. How it steps is a strategy object passed as `method`, as
Diffrax passes solvers (`AbstractDiscretisation`):

- `ZeroOrderHold()` (linear σ only): exact zero-order hold, h_{k+1} = e^{WΔ} h_k +
  W⁻¹(e^{WΔ} − I) U x_k; elementwise for diagonal W, and for full W the pair
  (e^{WΔ}, ∫_0^Δ e^{Ws} ds U) is read off one matrix exponential of the block matrix
  [[W, U], [0, 0]]Δ (no W⁻¹, so singular W is fine);
- `Euler()` (the default): the residual RNN h_{k+1} = h_k + Δ σ(W h_k + U x_k) (Fig. 1);

and `solve(ts, inputs)` is an adaptive Diffrax solve of eq. 6 on any input path, the reference.

For diagonal W and linear σ both discretisations are the elementwise linear recurrence
h_{k+1} = a ⊙ h_k + b_k (ZOH: a = e^{−wΔ}; Euler: a = 1 − Δw, b_k = Δ U x_k), which the `scan`
strategy evaluates (`curse._scans`): `SequentialScan()` or S5's `AssociativeScan()` (Smith et al.
2023), O(T) work in O(log T) depth instead of T dependent steps.

`kernel(t)` is the linear model's memory kernel ρ̂(t) = (cᵀ e^{Wt} U)ᵀ (eq. 7).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from curse._parameterisation import NAMES, from_rates, to_rates
from curse._scans import AbstractScan, SequentialScan, check_scan
from memdyn import check_finite
from memdyn.internal import (
    as_float_array,
    check_count,
    check_in,
    check_positive,
    check_shape,
    check_strategy,
)

STRUCTURES = ("diagonal", "full")
ACTIVATIONS = ("linear", "tanh")


class AbstractDiscretisation(eqx.Module):
    """How `ContinuousRNN` steps eq. 6 on a grid of step Δ; pass an instance as `method`. A new
    one is a subclass with `outputs`."""

    @abc.abstractmethod
    def outputs(
        self, model: ContinuousRNN, xs: Float[Array, "time d"], dt: float, scan: AbstractScan
    ) -> Float[Array, " time"]:
        """ŷ_k = cᵀ h_{k+1} from h_0 = 0, with `xs` and `dt` checked by the model and `scan` one
        it accepts (any for diagonal W and linear σ, else `SequentialScan()`)."""


class Euler(AbstractDiscretisation):
    """The residual RNN h_{k+1} = h_k + Δ σ(W h_k + U x_k) (Fig. 1): the default. For diagonal W
    and linear σ it is h_{k+1} = (1 − Δw) ⊙ h_k + Δ U x_k, evaluated by `scan`."""

    def outputs(self, model, xs, dt, scan):
        drives = xs @ model.input_weights.T
        if model._elementwise_linear:
            states = scan.linear_recurrence(1 - dt * model.rates(), dt * drives)
            return states @ model.readout

        def step(h, u):
            if model.structure == "diagonal":
                z = -model.rates() * h + u
            else:
                z = model.recurrent @ h + u
            h = h + dt * model._sigma(z)
            return h, h

        _, states = jax.lax.scan(step, jnp.zeros(model.hidden_size, drives.dtype), drives)
        return states @ model.readout


class ZeroOrderHold(AbstractDiscretisation):
    """Exact zero-order-hold stepping h_{k+1} = A h_k + B x_k (`ContinuousRNN.zoh_matrices`),
    linear σ only; for diagonal W evaluated by `scan`."""

    def outputs(self, model, xs, dt, scan):
        if model.activation != "linear":
            raise ValueError("ZeroOrderHold() is exact for activation='linear' only; use Euler()")
        A, B = model.zoh_matrices(dt)
        drives = xs @ B.T
        if model.structure == "diagonal":
            states = scan.linear_recurrence(A, drives)
        else:
            step = lambda h, b: (A @ h + b, A @ h + b)
            _, states = jax.lax.scan(step, jnp.zeros(model.hidden_size, drives.dtype), drives)
        return states @ model.readout


def check_discretisation(method: AbstractDiscretisation) -> AbstractDiscretisation:
    """`method`, after checking that it is an `AbstractDiscretisation` (a name raises
    `TypeError`)."""
    return check_strategy("method", method, AbstractDiscretisation, "Euler() or ZeroOrderHold()")


@functools.partial(jax.jit, static_argnames=("m", "d", "structure", "dtype"))
def _random_draws(
    key: PRNGKeyArray, *, m: int, d: int, structure: str, dtype
) -> tuple[Array, Float[Array, "m d"], Float[Array, " m"]]:
    """`ContinuousRNN`'s random draws in one compiled program per shape (drawn eagerly, each
    compiled its own): U(0.2, 2) rates (diagonal) or N(0, 1) noise for W (full), and N(0, 1)
    entries for U and c. Scaled outside, so the weights are bitwise those of eager draws."""
    w_key, u_key, c_key = jax.random.split(key, 3)
    if structure == "diagonal":
        recurrent = jax.random.uniform(w_key, (m,), dtype, 0.2, 2.0)
    else:
        recurrent = jax.random.normal(w_key, (m, m), dtype)
    return recurrent, jax.random.normal(u_key, (m, d), dtype), jax.random.normal(c_key, (m,), dtype)


class ContinuousRNN(eqx.Module):
    """Continuous-time RNN of width m on d-dimensional input with scalar readout (eq. 6).

    Args:
        hidden_size: m.
        input_size: d.
        structure: `"diagonal"` (W = −diag(w), w = f(v) by `parameterisation`) or `"full"`.
        activation: `"linear"` or `"tanh"`.
        parameterisation: one of `curse._parameterisation.NAMES` (diagonal W only).
        rates: optional decay rates w > 0 (diagonal W); random where omitted.
        recurrent: optional matrix W (full); random where omitted.
        input_weights: optional U (m × d); random where omitted.
        readout: optional c (m); random where omitted.
        key: PRNG key for the random initialisation: w ~ U(0.2, 2) (diagonal) or
            W = −I + N(0, 1/m)/2 (full, stable with high probability), U, c ~ N(0, 1/m).
    """

    recurrent: Float[Array, " m"] | Float[Array, "m m"]
    input_weights: Float[Array, "m d"]
    readout: Float[Array, " m"]
    structure: str = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    parameterisation: str = eqx.field(static=True)

    def __init__(
        self,
        hidden_size: int,
        input_size: int = 1,
        *,
        structure: str = "diagonal",
        activation: str = "linear",
        parameterisation: str = "exp",
        rates: Float[ArrayLike, " m"] | None = None,
        recurrent: Float[ArrayLike, "m m"] | None = None,
        input_weights: Float[ArrayLike, "m d"] | None = None,
        readout: Float[ArrayLike, " m"] | None = None,
        key: PRNGKeyArray,
    ):
        check_in("structure", structure, STRUCTURES)
        check_in("activation", activation, ACTIVATIONS)
        check_in("parameterisation", parameterisation, NAMES)
        m, d = check_count("hidden_size", hidden_size), check_count("input_size", input_size)
        dtype = jnp.result_type(float)
        given = (rates if structure == "diagonal" else recurrent, input_weights, readout)
        if any(weights is None for weights in given):
            drawn = _random_draws(key, m=m, d=d, structure=structure, dtype=dtype)
        scale = 1.0 / np.sqrt(m)
        if structure == "diagonal":
            if recurrent is not None:
                raise ValueError("recurrent (a full W) is for structure='full'; pass rates")
            if rates is None:
                rates = drawn[0]
            rates = check_positive("rates", as_float_array("rates", rates))
            check_shape("rates", rates, (m,))
            self.recurrent = from_rates(parameterisation, rates)
        else:
            if rates is not None:
                raise ValueError("rates are for structure='diagonal'; pass recurrent")
            if recurrent is None:
                recurrent = -jnp.eye(m, dtype=dtype) + 0.5 * scale * drawn[0]
            recurrent = check_finite("recurrent", as_float_array("recurrent", recurrent))
            check_shape("recurrent", recurrent, (m, m))
            self.recurrent = jnp.asarray(recurrent, dtype)
        if input_weights is None:
            input_weights = scale * drawn[1]
        if readout is None:
            readout = scale * drawn[2]
        input_weights = as_float_array("input_weights", input_weights)
        input_weights = check_finite("input_weights", input_weights)
        check_shape("input_weights", input_weights, (m, d))
        readout = check_finite("readout", as_float_array("readout", readout))
        check_shape("readout", readout, (m,))
        self.input_weights = jnp.asarray(input_weights, dtype)
        self.readout = jnp.asarray(readout, dtype)
        self.structure = structure
        self.activation = activation
        self.parameterisation = parameterisation

    @property
    def hidden_size(self) -> int:
        return self.input_weights.shape[0]

    @property
    def input_size(self) -> int:
        return self.input_weights.shape[1]

    def rates(self) -> Float[Array, " m"]:
        """Decay rates w = f(v) of a diagonal W = −diag(w)."""
        if self.structure != "diagonal":
            raise ValueError("rates() needs structure='diagonal'")
        return to_rates(self.parameterisation, self.recurrent)

    def matrix(self) -> Float[Array, "m m"]:
        """The recurrent matrix W."""
        if self.structure == "diagonal":
            return -jnp.diag(self.rates())
        return self.recurrent

    def _sigma(self, z):
        return jnp.tanh(z) if self.activation == "tanh" else z

    def _drive(self, h, x):
        if self.structure == "diagonal":
            return -self.rates() * h + self.input_weights @ x
        return self.recurrent @ h + self.input_weights @ x

    def vector_field(self, h: Float[Array, " m"], x: Float[Array, " d"]) -> Float[Array, " m"]:
        """dh/dt = σ(W h + U x) (eq. 6)."""
        return self._sigma(self._drive(h, x))

    def kernel(self, t: Float[ArrayLike, " n"]) -> Float[Array, "n d"]:
        """ρ̂(t) = (cᵀ e^{Wt} U)ᵀ for each t (eq. 7); linear models only."""
        if self.activation != "linear":
            raise ValueError("kernel() is defined for activation='linear' only")
        t = check_finite("t", as_float_array("t", t))
        check_shape("t", t, (None,))
        if self.structure == "diagonal":
            decay = jnp.exp(-t[:, None] * self.rates()[None, :])
            return (decay * self.readout) @ self.input_weights
        flows = jax.vmap(lambda tk: jax.scipy.linalg.expm(tk * self.recurrent))(t)
        return jnp.einsum("i,nij,jd->nd", self.readout, flows, self.input_weights)

    @property
    def _elementwise_linear(self) -> bool:
        return (self.structure, self.activation) == ("diagonal", "linear")

    def _check_sequence(self, xs, dt):
        # Once per sequence, at the entry of `__call__`, never in the scans.
        xs = as_float_array("xs", xs)
        check_shape("xs", xs, (None, self.input_size))
        return check_finite("xs", xs), check_positive("dt", dt)

    def zoh_matrices(self, dt: float) -> tuple[Array, Array]:
        """(A, B) with h_{k+1} = A h_k + B x_k exact for linear σ and piecewise-constant input:
        A = e^{WΔ}, B = ∫_0^Δ e^{Ws} ds U. Diagonal W: A = diag(e^{−wΔ}) (returned as a vector),
        B = (1 − e^{−wΔ})/w ⊙ U, with `expm1` for accuracy at small wΔ."""
        if self.structure == "diagonal":
            w = self.rates()
            return jnp.exp(-w * dt), (-jnp.expm1(-w * dt) / w)[:, None] * self.input_weights
        m, d = self.hidden_size, self.input_size
        block = jnp.zeros((m + d, m + d), self.recurrent.dtype)
        block = block.at[:m, :m].set(self.recurrent).at[:m, m:].set(self.input_weights)
        exponential = jax.scipy.linalg.expm(dt * block)
        return exponential[:m, :m], exponential[:m, m:]

    def _check_scan(self, scan):
        check_scan(scan)
        if not isinstance(scan, SequentialScan) and not self._elementwise_linear:
            raise ValueError(
                f"scan={scan!r} needs structure='diagonal' and activation='linear' (an "
                "elementwise linear recurrence); a full W would combine m × m matrices at O(m³) "
                "per step, and tanh is not linear: use SequentialScan(); got "
                f"structure={self.structure!r}, activation={self.activation!r}"
            )

    def __call__(
        self,
        xs: Float[Array, "time d"],
        dt: float,
        *,
        method: AbstractDiscretisation = Euler(),  # noqa: B008 (immutable, as Diffrax does)
        scan: AbstractScan = SequentialScan(),  # noqa: B008
    ) -> Float[Array, " time"]:
        """Outputs ŷ_k = cᵀ h_{k+1} on one input sequence, piecewise constant with step `dt`.

        `method` is `Euler()` (residual RNN, the default) or `ZeroOrderHold()` (exact for linear
        σ); `scan` is `SequentialScan()` (the default) or `AssociativeScan()` (diagonal W and
        linear σ only; see `curse._scans`). A name such as `"zoh"` raises `TypeError`. `xs` is
        `(time, d)` and finite, `dt > 0` (checked once per sequence, also under `jit`)."""
        check_discretisation(method)
        self._check_scan(scan)
        xs, dt = self._check_sequence(xs, dt)
        return method.outputs(self, xs, dt, scan)

    def solve(
        self,
        ts: Float[ArrayLike, " n"],
        inputs: Callable[[Float[Array, ""]], Float[Array, " d"]],
        *,
        rtol: float = 1e-10,
        atol: float = 1e-12,
        jump_ts: Float[ArrayLike, " k"] | None = None,
        max_steps: int = 100_000,
    ) -> Float[Array, " n"]:
        """ŷ(t) at times `ts` (from h(0) = 0 at t = 0) by an adaptive Diffrax solve (Tsit5).

        `inputs(t)` is the input path x(t). For piecewise-constant inputs pass the switching
        times as `jump_ts`: Diffrax then steps to the float just before each jump and restarts
        just after it, so no step straddles a discontinuity and the solver keeps its order.
        """
        ts = check_finite("ts", as_float_array("ts", ts))
        check_shape("ts", ts, (None,))
        if ts.shape[0] == 0:
            raise ValueError("ts must be non-empty")
        field = lambda t, h, args: self.vector_field(h, inputs(t))
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        if jump_ts is not None:
            controller = diffrax.ClipStepSizeController(controller, jump_ts=jnp.asarray(jump_ts))
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field),
            diffrax.Tsit5(),
            t0=jnp.zeros((), ts.dtype),
            t1=ts[-1],
            dt0=None,
            y0=jnp.zeros(self.hidden_size, self.input_weights.dtype),
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=controller,
            max_steps=max_steps,
        )
        return solution.ys @ self.readout


def piecewise_constant(
    xs: Float[Array, "time d"], dt: float
) -> Callable[[Float[Array, ""]], Float[Array, " d"]]:
    """The path x(t) = x_k on [kΔ, (k + 1)Δ) (last value held afterwards), for `solve`.

    The step is located by comparison with `jump_times(len(xs), dt)` rather than by ⌊t/Δ⌋, so
    that at the float just before a jump (where Diffrax evaluates with `jump_ts`) the value is
    still the old one, whatever the rounding of t/Δ."""
    xs = jnp.asarray(xs)
    jumps = jump_times(xs.shape[0], dt)
    return lambda t: xs[jnp.searchsorted(jumps, t, side="right")]


def jump_times(num_steps: int, dt: float) -> Float[Array, " jumps"]:
    """Switching times Δ, 2Δ, ..., (num_steps − 1)Δ of a piecewise-constant path (`jump_ts`)."""
    return dt * jnp.arange(1, num_steps, dtype=jnp.result_type(float))
