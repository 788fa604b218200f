"""A recurrent interface any cell fits: one step `(carry, x) -> (carry, output)` of one example,
plus its initial carry, and `unroll`, which runs a cell over a sequence in one `lax.scan`.

Two cells beyond the LSTM family come with it: a true GRU, whose reset gate multiplies the
recurrent product alone (Cho et al. 2014; PyTorch's `nn.GRU` and `eqx.nn.GRUCell`), and the
linear recurrent unit (Orvieto et al., ICML 2023), a diagonal complex recurrence kept in real
parameters so that every memdyn analysis takes it. A user's cell is one subclass:

```python
class LeakyCell(memdyn.AbstractCell):
    weight: jax.Array
    leak: float = eqx.field(static=True)

    def initial_carry(self):
        return jnp.zeros(self.weight.shape[0])

    def __call__(self, carry, x):
        carry = (1 - self.leak) * carry + self.leak * jnp.tanh(self.weight @ jnp.append(carry, x))
        return carry, carry
```
"""

from __future__ import annotations

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from memdyn._validate import as_float_array, check_count, check_shape


class AbstractCell(eqx.Module):
    """One step of a recurrent cell on one example; batch with `jax.vmap`, run with `unroll`."""

    @abc.abstractmethod
    def initial_carry(self) -> PyTree:
        """The carry before the first step (the hidden state, or several arrays)."""

    @abc.abstractmethod
    def __call__(self, carry: PyTree, x: Float[Array, " input"]) -> tuple[PyTree, PyTree]:
        """`(carry, output)` after one step with input `x`."""


def unroll(
    cell: AbstractCell, xs: Float[Array, "time input"], *, carry: PyTree | None = None
) -> tuple[PyTree, PyTree]:
    """Run `cell` over the sequence `xs` from `carry` (default `cell.initial_carry()`) in one
    `lax.scan`: the final carry and the outputs stacked on a leading time axis."""
    xs = as_float_array("xs", xs)
    check_shape("xs", xs, (None, None))
    step = lambda carry, x: cell(carry, x)  # a closure: scan would hash the cell itself
    return jax.lax.scan(step, cell.initial_carry() if carry is None else carry, xs)


def _uniform(key, shape, bound, dtype):
    return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)


class GRUCell(AbstractCell):
    """The gated recurrent unit in PyTorch's form: with gates in the order reset, update, new,

        r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz),
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h.

    The reset gate multiplies the recurrent product `W_hn h + b_hn` alone, which a cell that only
    sees summed pre-activations cannot express. `bias` holds `b_i + b_h` of the reset and update
    gates and `b_in`; `bias_new` holds `b_hn`. The carry and the output are `h`.
    """

    weight_input: Float[Array, "gates input"]
    weight_recurrent: Float[Array, "gates hidden"]
    bias: Float[Array, " gates"]
    bias_new: Float[Array, " hidden"]

    def __init__(self, input_size: int, hidden_size: int, *, key: PRNGKeyArray, dtype=None):
        """PyTorch's initialisation: every array from U(−1/√N, 1/√N)."""
        check_count("input_size", input_size)
        check_count("hidden_size", hidden_size)
        dtype = jnp.result_type(float) if dtype is None else dtype
        bound = 1 / math.sqrt(hidden_size)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.weight_input = _uniform(k1, (3 * hidden_size, input_size), bound, dtype)
        self.weight_recurrent = _uniform(k2, (3 * hidden_size, hidden_size), bound, dtype)
        self.bias = _uniform(k3, (3 * hidden_size,), bound, dtype)
        self.bias_new = _uniform(k4, (hidden_size,), bound, dtype)

    def initial_carry(self) -> Float[Array, " hidden"]:
        return jnp.zeros(self.bias_new.shape, self.bias_new.dtype)

    def __call__(self, carry, x):
        reset_in, update_in, new_in = jnp.split(self.weight_input @ x + self.bias, 3)
        reset_h, update_h, new_h = jnp.split(self.weight_recurrent @ carry, 3)
        reset = jax.nn.sigmoid(reset_in + reset_h)
        update = jax.nn.sigmoid(update_in + update_h)
        new = jnp.tanh(new_in + reset * (new_h + self.bias_new))
        hidden = (1 - update) * new + update * carry
        return hidden, hidden


class LRUCell(AbstractCell):
    """The linear recurrent unit (Orvieto et al. 2023, eq. 7), a diagonal complex recurrence
    with a real readout:

        x_k = λ ⊙ x_{k−1} + γ ⊙ (B u_k),  y_k = Re(C x_k) + d ⊙ u_k,
        λ = exp(−exp(ν) + i exp(θ)),  γ = exp(γ_log) (the normalisation √(1 − |λ|²) at init).

    Complex arrays are kept as real and imaginary parts, so every parameter is real and every
    memdyn analysis (Hessians, operators, training) takes the cell. The carry is the complex
    state `x` as a pair (real, imaginary); the output is `y`.
    """

    nu_log: Float[Array, " state"]
    theta_log: Float[Array, " state"]
    gamma_log: Float[Array, " state"]
    input_real: Float[Array, "state input"]
    input_imag: Float[Array, "state input"]
    output_real: Float[Array, "output state"]
    output_imag: Float[Array, "output state"]
    skip: Float[Array, " input"]

    def __init__(
        self,
        input_size: int,
        state_size: int,
        *,
        r_min: float = 0.0,
        r_max: float = 1.0,
        max_phase: float = 2 * math.pi,
        key: PRNGKeyArray,
        dtype=None,
    ):
        """The paper's initialisation: |λ| uniform on the ring r_min ≤ |λ| ≤ r_max (by area),
        phase uniform on [0, max_phase], B and C Glorot-like Gaussians, d standard Gaussian;
        the output has the input's size."""
        check_count("input_size", input_size)
        check_count("state_size", state_size)
        if not 0 <= r_min < r_max <= 1:
            raise ValueError(f"need 0 <= r_min < r_max <= 1; got r_min={r_min}, r_max={r_max}")
        dtype = jnp.result_type(float) if dtype is None else dtype
        keys = jax.random.split(key, 7)
        u1 = jax.random.uniform(keys[0], (state_size,), dtype)
        u2 = jax.random.uniform(keys[1], (state_size,), dtype)
        self.nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        self.theta_log = jnp.log(max_phase * u2)
        modulus = jnp.exp(-jnp.exp(self.nu_log))
        self.gamma_log = jnp.log(jnp.sqrt(1 - modulus**2))
        scale_in = 1 / math.sqrt(2 * input_size)
        scale_out = 1 / math.sqrt(state_size)
        normal = lambda k, shape, s: s * jax.random.normal(k, shape, dtype)
        self.input_real = normal(keys[2], (state_size, input_size), scale_in)
        self.input_imag = normal(keys[3], (state_size, input_size), scale_in)
        self.output_real = normal(keys[4], (input_size, state_size), scale_out)
        self.output_imag = normal(keys[5], (input_size, state_size), scale_out)
        self.skip = normal(keys[6], (input_size,), 1.0)

    def eigenvalues(self) -> tuple[Float[Array, " state"], Float[Array, " state"]]:
        """λ as (real, imaginary) parts."""
        modulus = jnp.exp(-jnp.exp(self.nu_log))
        phase = jnp.exp(self.theta_log)
        return modulus * jnp.cos(phase), modulus * jnp.sin(phase)

    def initial_carry(self) -> tuple[Float[Array, " state"], Float[Array, " state"]]:
        zeros = jnp.zeros(self.nu_log.shape, self.nu_log.dtype)
        return zeros, zeros

    def __call__(self, carry, u):
        real, imag = carry
        lam_real, lam_imag = self.eigenvalues()
        gamma = jnp.exp(self.gamma_log)
        drive_real = gamma * (self.input_real @ u)
        drive_imag = gamma * (self.input_imag @ u)
        real, imag = (
            lam_real * real - lam_imag * imag + drive_real,
            lam_real * imag + lam_imag * real + drive_imag,
        )
        output = self.output_real @ real - self.output_imag @ imag + self.skip * u
        return (real, imag), output
