"""How the elementwise linear recurrence of a diagonal linear RNN is evaluated: a strategy object
passed as `scan`, as Diffrax passes solvers, never a string.

For diagonal W and linear σ both discretisations of `ContinuousRNN` are the elementwise linear
recurrence h_{k+1} = a ⊙ h_k + b_k from h_0 = 0 (ZOH: a = e^{−wΔ}; Euler: a = 1 − Δw,
b_k = Δ U x_k).

- `SequentialScan()` (the default): `lax.scan`, T dependent steps.
- `AssociativeScan()`: `lax.associative_scan` over the pairs (a, b_k) with
  (a₁, b₁) ∘ (a₂, b₂) = (a₁a₂, a₂b₁ + b₂), whose prefixes are (a^{k+1}, h_{k+1}), as in S5 (Smith
  et al. 2023): O(T) work (a few times the sequential scan's flops) in O(log T) depth, so it can
  pay where many cores or a GPU run the levels at once. On one CPU core it does not: at m = 64,
  T = 10⁴–10⁵ `benchmarks.zoh` measured it 1.2–1.5× slower forward and 1.8–3.4× slower forward and
  backward than the sequential scan, and its XLA compilation takes seconds (tens with the backward
  pass). It holds the (T, m) powers of a in memory.

Both agree to rounding and are differentiable. Models whose recurrence is not elementwise linear
(full W, tanh) are stepped one step at a time by `lax.scan` and take `SequentialScan()` only.

```python
outputs = model(xs, dt, method=ZeroOrderHold(), scan=AssociativeScan())
```
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from memdyn.internal import check_strategy


class AbstractScan(eqx.Module):
    """How h_{k+1} = a ⊙ h_k + b_k is evaluated; pass an instance as `scan` to
    `ContinuousRNN.__call__`. A new one is a subclass with `linear_recurrence`."""

    @abc.abstractmethod
    def linear_recurrence(
        self, a: Float[Array, " m"], drives: Float[Array, "time m"]
    ) -> Float[Array, "time m"]:
        """States h_1, ..., h_T of h_{k+1} = a ⊙ h_k + b_k from h_0 = 0 (b_k = `drives[k]`)."""


class SequentialScan(AbstractScan):
    """`lax.scan`, T dependent steps: the default, and the only scan for models whose recurrence
    is not elementwise linear."""

    def linear_recurrence(self, a, drives):
        step = lambda h, b: (a * h + b, a * h + b)
        return jax.lax.scan(step, jnp.zeros(drives.shape[1:], drives.dtype), drives)[1]


class AssociativeScan(AbstractScan):
    """`lax.associative_scan` as in S5 (Smith et al. 2023): O(log T) depth (module docstring)."""

    def linear_recurrence(self, a, drives):
        combine = lambda left, right: (left[0] * right[0], right[0] * left[1] + right[1])
        decays = jnp.broadcast_to(a, drives.shape)
        return jax.lax.associative_scan(combine, (decays, drives))[1]


def check_scan(scan: AbstractScan) -> AbstractScan:
    """`scan`, after checking that it is an `AbstractScan` (a name raises `TypeError`)."""
    return check_strategy("scan", scan, AbstractScan, "SequentialScan() or AssociativeScan()")
