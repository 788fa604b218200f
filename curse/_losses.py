"""White-noise losses of linear RNNs against a target kernel (Li et al., App. C.1).

With white-noise input (Itô isometry), d = 1 and T → ∞ the loss is the L² distance between the
model kernel ρ̂ and the target kernel ρ:

- diagonal model `ρ̂(t) = Σ_i a_i e^{−w_i t}` (`a = c ⊙ u`, `W = −diag(w)`, w > 0), eq. 18/77:
  `J(a, w) = Σ_ij a_i a_j / (w_i + w_j) − 2 Σ_i a_i L[ρ](w_i) + ‖ρ‖²`;
- full model `ρ̂(t) = cᵀ e^{Wt} u` with stable W: `‖ρ̂‖² = cᵀ P c`, `W P + P Wᵀ + u uᵀ = 0`.

Every function checks its input by one rule, under `jit`, `vmap` and `grad` too: shapes and
dtypes in Python at trace time (`ValueError`/`TypeError`), values (finite, w > 0, W stable) by
`eqx.error_if` (see `memdyn.check_finite`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from curse._targets import ExponentialSum, Target, TargetSum
from memdyn import check_finite
from memdyn.internal import as_float_array, check_positive, check_shape


def _diagonal(a, w) -> tuple[Array, Array]:
    a, w = as_float_array("a", a), as_float_array("w", w)
    check_shape("a", a, (None,))
    check_shape("w", w, (a.shape[0],))
    return check_finite("a", a), check_positive("w (decay rates)", w)


def _check_target(target) -> None:
    if not isinstance(target, Target):
        raise TypeError(f"target must be a curse.Target; got {type(target).__name__}")


def white_noise_loss(
    a: Float[ArrayLike, " m"], w: Float[ArrayLike, " m"], target: Target
) -> Float[Array, ""]:
    """J(a, w) = ∫_0^∞ (Σ_i a_i e^{−w_i t} − ρ(t))² dt in closed form (eq. 18/77):
    `Σ_ij a_i a_j / (w_i + w_j) − 2 Σ_i a_i L[ρ](w_i) + ‖ρ‖²`; needs w > 0."""
    _check_target(target)
    a, w = _diagonal(a, w)
    gram = 1.0 / (w[:, None] + w[None, :])
    return a @ gram @ a - 2.0 * a @ target.laplace(w) + target.norm_squared()


def white_noise_grad(
    a: Float[ArrayLike, " m"], w: Float[ArrayLike, " m"], target: Target
) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
    """(∂J/∂a, ∂J/∂w) by eq. 19:

    ∂J/∂a_i = 2 [Σ_j a_j/(w_i + w_j) − `L[ρ](w_i)`],
    ∂J/∂w_i = −2 a_i [Σ_j a_j/(w_i + w_j)² + L[ρ]'(w_i)].
    """
    _check_target(target)
    a, w = _diagonal(a, w)
    laplace, laplace_prime = jax.jvp(target.laplace, (w,), (jnp.ones_like(w),))
    pair = w[:, None] + w[None, :]
    da = 2.0 * ((1.0 / pair) @ a - laplace)
    dw = -2.0 * a * ((1.0 / pair**2) @ a + laplace_prime)
    return da, dw


def _square_system(W, u) -> tuple[Array, Array]:
    W, u = as_float_array("W", W), as_float_array("u", u)
    check_shape("W", W, (None, None))
    check_shape("W", W, (W.shape[0], W.shape[0]))
    check_shape("u", u, (W.shape[0],))
    return check_finite("W", W), check_finite("u", u)


def lyapunov_gramian(W: Float[Array, "n n"], u: Float[Array, " n"]) -> Float[Array, "n n"]:
    """P = ∫_0^∞ e^{Wt} u uᵀ e^{Wᵀt} dt, the solution of W P + P Wᵀ + u uᵀ = 0 (W stable).

    Solved as the n² × n² Kronecker system (I ⊗ W + W ⊗ I) vec P = −vec(u uᵀ): exact and
    differentiable, meant for the small widths of these experiments (n ≲ 30). W (n × n) and u
    (n) are checked as in `lyapunov_loss`, except stability.
    """
    W, u = _square_system(W, u)
    n = W.shape[0]
    eye = jnp.eye(n, dtype=W.dtype)
    operator = jnp.kron(eye, W) + jnp.kron(W, eye)
    rhs = -jnp.outer(u, u).reshape(-1)
    return jnp.linalg.solve(operator, rhs).reshape(n, n)


def _cross_term(W, u, c, target: Target):
    """∫_0^∞ cᵀ e^{Wt} u ρ(t) dt."""
    if isinstance(target, TargetSum):
        return sum(_cross_term(W, u, c, term) for term in target.terms)
    if isinstance(target, ExponentialSum):
        eye = jnp.eye(W.shape[0], dtype=W.dtype)
        resolvents = jax.vmap(lambda rate: jnp.linalg.solve(rate * eye - W, u))(target.w)
        return target.a @ (resolvents @ c)
    # No closed form: the target's own quadrature nodes, with e^{Wt} u by `expm` at each node.
    t, weights = target.quadrature()
    states = jax.vmap(lambda tk: jax.scipy.linalg.expm(tk * W) @ u)(t)
    return jnp.sum(weights * target.kernel(t) * (states @ c))


def lyapunov_loss(
    W: Float[ArrayLike, "n n"],
    u: Float[ArrayLike, " n"],
    c: Float[ArrayLike, " n"],
    target: Target,
) -> Float[Array, ""]:
    """∫_0^∞ (cᵀ e^{Wt} u − ρ(t))² dt for a linear RNN with full recurrent matrix W (App. C.1).

    `‖ρ̂‖² = cᵀ P c` with the Lyapunov gramian P; the cross term is Σ_j a*_j cᵀ (w*_j I − W)⁻¹ u
    against exponential sums (also inside sums of targets), and Gauss–Legendre quadrature on the
    target's own nodes (`Target.quadrature`, e^{Wt} by `expm`) for every other target.
    W must be stable (all eigenvalues with negative real part), checked under `jit` too.
    """
    _check_target(target)
    W, u = _square_system(W, u)
    c = as_float_array("c", c)
    check_shape("c", c, u.shape)
    c = check_finite("c", c)
    W = eqx.error_if(
        W,
        jnp.max(jnp.linalg.eigvals(jax.lax.stop_gradient(W)).real) >= 0,
        "W must be stable (all eigenvalues with negative real part)",
    )
    gramian = lyapunov_gramian(W, u)
    return c @ gramian @ c - 2.0 * _cross_term(W, u, c, target) + target.norm_squared()
