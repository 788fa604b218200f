"""Target kernels ρ of linear functionals `H_t(x) = ∫_0^∞ ρ(s) x(t − s) ds` (Li et al., eq. 12).

Every target is an `eqx.Module` (so a batch of targets is a pytree and `jax.vmap` sweeps over it)
with three methods used by the white-noise loss (eq. 18/77):

- `kernel(t)`: ρ(t), elementwise;
- `laplace(s)`: `L[ρ](s)` = ∫_0^∞ e^{−st} ρ(t) dt for s > 0, elementwise and differentiable in s,
  so `jax.grad` gives L[ρ]' (eq. 19);
- `norm_squared()`: ‖ρ‖² = ∫_0^∞ ρ(t)² dt.

The built-in targets' three methods are each compiled once per kind of target and shape of
argument (`compiled_method`): eagerly, every operation of a transform compiled its own program.

Closed forms are used where they exist, evaluated in log space where they would overflow; the
polynomial and Airy kernels use fixed-node Gauss–Legendre quadrature (static node count, so the
transforms stay `jit`/`vmap`/`grad` compatible).
"""

from __future__ import annotations

import abc
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy.special import log_ndtr, ndtr
from jaxtyping import Array, ArrayLike, Float

from memdyn import check_finite
from memdyn.internal import as_float_array, check_in, check_positive, check_shape

# Beyond this many e-folds of decay a kernel is treated as zero by the quadratures below.
_DECAY_EFOLDS = 40.0


def _gauss_legendre(
    lo: ArrayLike, hi: ArrayLike, panels: int, order: int
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """Composite Gauss–Legendre nodes and weights on `[lo, hi]` (`lo`, `hi` may be traced)."""
    x, w = np.polynomial.legendre.leggauss(order)
    lo = jnp.asarray(lo)
    hi = jnp.asarray(hi)
    dtype = jnp.result_type(lo, hi, float)
    edges = lo + (hi - lo) * jnp.linspace(0.0, 1.0, panels + 1, dtype=dtype)
    half = 0.5 * (edges[1:] - edges[:-1])
    mid = 0.5 * (edges[1:] + edges[:-1])
    nodes = mid[:, None] + half[:, None] * jnp.asarray(x, dtype)[None, :]
    weights = half[:, None] * jnp.asarray(w, dtype)[None, :]
    return nodes.reshape(-1), weights.reshape(-1)


def _as_float(name: str, x: ArrayLike) -> Array:
    return check_finite(name, as_float_array(name, x))


def compiled_method(method):
    """`method(self, *arrays)` compiled once per kind of target and shape of its arguments (its
    arguments made arrays first, so a new float is not a new program). Eagerly, every operation
    of a transform or a quadrature compiled its own program: a target's ‖ρ‖² took seconds. Under
    an outer `jit`, `vmap` or `grad` the compiled method is traced into the caller's program."""
    compiled = eqx.filter_jit(method)

    @functools.wraps(method)
    def call(self, *args):
        return compiled(self, *map(jnp.asarray, args))

    return call


class Target(eqx.Module):
    """A kernel ρ ∈ L¹ ∩ L²(0, ∞) of a linear, causal, time-homogeneous functional."""

    @abc.abstractmethod
    def kernel(self, t: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """ρ(t), elementwise."""

    @abc.abstractmethod
    def laplace(self, s: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
        """`L[ρ](s)` = ∫_0^∞ e^{−st} ρ(t) dt for s > 0, elementwise."""

    @abc.abstractmethod
    def norm_squared(self) -> Float[Array, ""]:
        """‖ρ‖²_{L²(0,∞)}."""

    @abc.abstractmethod
    def quadrature(self) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
        """Nodes and weights resolving ∫_0^∞ ρ(t) f(t) dt for smooth, bounded, decaying f."""

    @abc.abstractmethod
    def horizon(self) -> Float[Array, ""]:
        """A time beyond which ρ is negligible (`inf` for heavy tails)."""


class ExponentialSum(Target):
    """ρ(t) = Σ_j a_j e^{−w_j t} with rates w_j > 0; `L[ρ](s)` = Σ_j a_j / (s + w_j)."""

    a: Float[Array, " k"]
    w: Float[Array, " k"]

    def __init__(self, a: Float[ArrayLike, " k"], w: Float[ArrayLike, " k"]):
        a = _as_float("a", a)
        w = _as_float("w", w)
        check_shape("a", a, (None,))
        check_shape("w", w, (a.shape[0],))
        w = check_positive("w (exponential rates)", w)
        self.a = a
        self.w = w

    @compiled_method
    def kernel(self, t):
        t = jnp.asarray(t)
        return jnp.sum(self.a * jnp.exp(-self.w * t[..., None]), axis=-1)

    @compiled_method
    def laplace(self, s):
        s = jnp.asarray(s)
        return jnp.sum(self.a / (s[..., None] + self.w), axis=-1)

    @compiled_method
    def norm_squared(self):
        return self.a @ (1.0 / (self.w[:, None] + self.w[None, :])) @ self.a

    def quadrature(self):
        return _gauss_legendre(0.0, _DECAY_EFOLDS / jnp.min(self.w), 32, 16)

    def horizon(self):
        return _DECAY_EFOLDS / jnp.min(self.w)


class GaussianBump(Target):
    """ρ(t) = A exp(−(t − t0)² / (2σ²)) on t ≥ 0 (amplitude A, centre t0, width σ).

    `L[ρ](s)` = A σ √(π/2) exp(s²σ²/2 − s t0) erfc((sσ² − t0)/(σ√2)), evaluated as
    log L = log(Aσ√(2π)) + s²σ²/2 − s t0 + log Φ((t0 − sσ²)/σ) with `log_ndtr`, so the huge
    exponential and the tiny erfc never meet for large s·t0.
    """

    amplitude: Float[Array, ""]
    centre: Float[Array, ""]
    width: Float[Array, ""]

    def __init__(self, amplitude: ArrayLike, centre: ArrayLike, width: ArrayLike):
        self.amplitude = _as_float("amplitude", amplitude)
        self.centre = _as_float("centre", centre)
        self.width = _as_float("width", width)
        self.width = check_positive("width", self.width)

    @compiled_method
    def kernel(self, t):
        z = (jnp.asarray(t) - self.centre) / self.width
        return self.amplitude * jnp.exp(-0.5 * z**2)

    @compiled_method
    def laplace(self, s):
        s = jnp.asarray(s)
        sigma, t0 = self.width, self.centre
        log_mag = (
            jnp.log(sigma * math.sqrt(2 * math.pi))
            + 0.5 * (s * sigma) ** 2
            - s * t0
            + log_ndtr((t0 - s * sigma**2) / sigma)
        )
        return self.amplitude * jnp.exp(log_mag)

    @compiled_method
    def norm_squared(self):
        sigma = self.width
        return (
            self.amplitude**2
            * sigma
            * math.sqrt(math.pi)
            * ndtr(math.sqrt(2) * self.centre / sigma)
        )

    def quadrature(self):
        lo = jnp.maximum(self.centre - 10 * self.width, 0.0)
        return _gauss_legendre(lo, self.centre + 10 * self.width, 16, 16)

    def horizon(self):
        return jnp.maximum(self.centre + 10 * self.width, 0.0)


class PolynomialDecay(Target):
    """ρ(t) = (1 + t)^{−(1+ω)}, ω > 0: heavy-tailed, long memory (§4). ‖ρ‖² = 1/(1 + 2ω).

    `L[ρ](s)` = e^s s^ω Γ(−ω, s). Substituting 1 + t = e^y gives the smooth, bounded integrand
    `L[ρ](s)` = ∫_0^∞ exp(−s(e^y − 1) − ωy) dy, which is below e^{−40} past y = log(1 + 40/s);
    fixed-node Gauss–Legendre on that interval is accurate to ~1e-12 for 1e-4 ≤ s ≤ 1e3.
    """

    omega: Float[Array, ""]
    panels: int = eqx.field(static=True, default=16)
    order: int = eqx.field(static=True, default=16)

    def __init__(self, omega: ArrayLike, panels: int = 16, order: int = 16):
        self.omega = _as_float("omega", omega)
        self.omega = check_positive("omega", self.omega)
        self.panels = panels
        self.order = order

    @compiled_method
    def kernel(self, t):
        return jnp.power(1.0 + jnp.asarray(t), -(1.0 + self.omega))

    @compiled_method
    def laplace(self, s):
        s = jnp.asarray(s)
        unit, weights = _gauss_legendre(0.0, 1.0, self.panels, self.order)
        y_max = jnp.log1p(_DECAY_EFOLDS / s)[..., None]
        y = y_max * unit
        integrand = jnp.exp(-s[..., None] * jnp.expm1(y) - self.omega * y)
        return jnp.sum(y_max * weights * integrand, axis=-1)

    @compiled_method
    def norm_squared(self):
        return 1.0 / (1.0 + 2.0 * self.omega)

    def quadrature(self):
        # Same substitution, t = e^y − 1, dt = e^y dy, up to t = 1e5: partners integrated on
        # these nodes (model kernels e^{Wt}u) must have decayed by then (rates ≳ 1e-3); beyond
        # it `expm(tW)` also turns to NaN in float64 once the result underflows.
        y, weights = _gauss_legendre(0.0, math.log1p(1e5), 4 * self.panels, self.order)
        return jnp.expm1(y), weights * jnp.exp(y)

    def horizon(self):
        return jnp.asarray(jnp.inf)


@jax.custom_jvp
def airy_ai(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """Airy function Ai(x) through `scipy.special.airy` on the host; derivative Ai'(x)."""
    return _airy(x)[0]


def _airy(x):
    """(Ai(x), Ai'(x)) from `scipy.special.airy` through `jax.pure_callback`.

    Float64 values come back as their bits, two uint32 words per value, reassembled by
    `bitcast_convert_type`: JAX canonicalises a callback's results with the x64 setting of the
    thread the callback runs in, and XLA runs it on one of its own threads whenever the program
    is dispatched asynchronously, where `jax.enable_x64(True)`, a per-thread setting, does not
    hold, so float64 results came back as float32 and were refused ("Incorrect output dtype").
    uint32 is the same under either setting. Float32 values come back as they are."""
    x = jnp.asarray(x, dtype=float)
    wide = x.dtype == jnp.float64
    words = (2,) if wide else ()
    result = jax.ShapeDtypeStruct(x.shape + words, jnp.uint32 if wide else x.dtype)

    def host(v):
        v = np.asarray(v)
        ai, aip, _, _ = scipy.special.airy(v.astype(np.float64))
        if wide:
            return tuple(
                np.ascontiguousarray(a).view(np.uint32).reshape(v.shape + words) for a in (ai, aip)
            )
        return ai.astype(v.dtype), aip.astype(v.dtype)

    ai, aip = jax.pure_callback(host, (result, result), x, vmap_method="expand_dims")
    if wide:
        ai, aip = (jax.lax.bitcast_convert_type(a, jnp.float64) for a in (ai, aip))
    return ai, aip


@airy_ai.defjvp
def _airy_ai_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    ai, aip = _airy(x)
    return ai, aip * dx


class ScaledAiry(Target):
    """ρ(t) = Ai(s0 (t − t0)): oscillatory before t0, super-exponential decay after (Fig. 1b).

    L[ρ] has no closed form: composite Gauss–Legendre on [0, t0 + 16/s0] (Ai(16) ≈ 1e-25).
    ‖ρ‖² = (Ai'(x)² − x Ai(x)²)/s0 at x = −s0 t0, from the antiderivative x Ai² − Ai'² of Ai².
    """

    s0: Float[Array, ""]
    t0: Float[Array, ""]
    panels: int = eqx.field(static=True, default=128)
    order: int = eqx.field(static=True, default=16)

    def __init__(self, s0: ArrayLike, t0: ArrayLike, panels: int = 128, order: int = 16):
        self.s0 = _as_float("s0", s0)
        self.t0 = _as_float("t0", t0)
        self.s0 = check_positive("s0", self.s0)
        self.t0 = check_positive("t0", self.t0, strict=False)
        self.panels = panels
        self.order = order

    @compiled_method
    def kernel(self, t):
        return airy_ai(self.s0 * (jnp.asarray(t) - self.t0))

    @compiled_method
    def laplace(self, s):
        s = jnp.asarray(s)
        t, weights = self.quadrature()
        values = weights * self.kernel(t)
        return jnp.sum(values * jnp.exp(-s[..., None] * t), axis=-1)

    @compiled_method
    def norm_squared(self):
        x = -self.s0 * self.t0
        ai, aip = _airy(x)
        return (aip**2 - x * ai**2) / self.s0

    def quadrature(self):
        return _gauss_legendre(0.0, self.horizon(), self.panels, self.order)

    def horizon(self):
        return self.t0 + 16.0 / self.s0


def inner_product(p: Target, q: Target) -> Float[Array, ""]:
    """⟨p, q⟩ = ∫_0^∞ p(t) q(t) dt: closed form where one exists, otherwise quadrature."""
    if isinstance(p, TargetSum):
        return sum(inner_product(term, q) for term in p.terms)
    if isinstance(q, TargetSum):
        return sum(inner_product(p, term) for term in q.terms)
    if isinstance(p, ExponentialSum):
        return jnp.sum(p.a * q.laplace(p.w))
    if isinstance(q, ExponentialSum):
        return jnp.sum(q.a * p.laplace(q.w))
    if isinstance(p, GaussianBump) and isinstance(q, GaussianBump):
        precision = 1 / p.width**2 + 1 / q.width**2
        mean = (p.centre / p.width**2 + q.centre / q.width**2) / precision
        log_overlap = -((p.centre - q.centre) ** 2) / (2 * (p.width**2 + q.width**2))
        scale = jnp.sqrt(2 * math.pi / precision) * ndtr(mean * jnp.sqrt(precision))
        return p.amplitude * q.amplitude * jnp.exp(log_overlap) * scale
    if isinstance(p, PolynomialDecay) and isinstance(q, PolynomialDecay):
        return 1.0 / (1.0 + p.omega + q.omega)
    # Integrate on the nodes of the kernel with the shorter support: it sets the resolution.
    narrow = p if isinstance(q, PolynomialDecay) else q
    t, weights = narrow.quadrature()
    return jnp.sum(weights * p.kernel(t) * q.kernel(t))


class TargetSum(Target):
    """ρ = Σ_i ρ_i; ‖ρ‖² includes the cross terms ⟨ρ_i, ρ_j⟩ (`inner_product`)."""

    terms: tuple[Target, ...]

    def __init__(self, terms):
        terms = tuple(terms)
        if not terms or not all(isinstance(term, Target) for term in terms):
            raise ValueError("terms must be a non-empty sequence of Target instances")
        self.terms = terms

    @compiled_method
    def kernel(self, t):
        return sum(term.kernel(t) for term in self.terms)

    @compiled_method
    def laplace(self, s):
        return sum(term.laplace(s) for term in self.terms)

    @compiled_method
    def norm_squared(self):
        return inner_product(self, self)

    def quadrature(self):
        nodes, weights = zip(*(term.quadrature() for term in self.terms), strict=True)
        return jnp.concatenate(nodes), jnp.concatenate(weights)

    def horizon(self):
        return jnp.max(jnp.stack([term.horizon() for term in self.terms]))


# Defaults of the memory target (eq. 20/125). The short-memory part ρ̄ is a two-term exponential
# sum that the model represents exactly; the template ρ_0 is a unit-width Gaussian of amplitude 1.
# As ω → 0 its centre 1/ω recedes and the gradient at ρ̂ = ρ̄ shrinks like e^{−w/ω}: the plateau.
SHORT_MEMORY_A = (1.0, 0.5)
SHORT_MEMORY_W = (1.0, 2.0)
BUMP_AMPLITUDE = 1.0
BUMP_WIDTH = 1.0


def memory_target(
    omega: ArrayLike,
    *,
    short_a: Float[ArrayLike, " k"] = SHORT_MEMORY_A,
    short_w: Float[ArrayLike, " k"] = SHORT_MEMORY_W,
    amplitude: ArrayLike = BUMP_AMPLITUDE,
    width: ArrayLike = BUMP_WIDTH,
) -> TargetSum:
    """ρ_ω(t) = Σ_j ā_j e^{−w̄_j t} + A exp(−(t − 1/ω)²/(2σ²)) (eq. 20 with eq. 125's choices).

    `jax.vmap(memory_target)(omegas)` builds a batch of targets for a sweep over ω.
    """
    omega = check_positive("omega", _as_float("omega", omega))
    short = ExponentialSum(short_a, short_w)
    return TargetSum((short, GaussianBump(amplitude, 1.0 / omega, width)))


_FACTORIES = {
    "exponential_sum": ExponentialSum,
    "gaussian_bump": GaussianBump,
    "polynomial": PolynomialDecay,
    "airy": ScaledAiry,
    "memory": memory_target,
}


def make_target(name: str, **params) -> Target:
    """Build a target by name (for the CLI): one of `exponential_sum`, `gaussian_bump`,
    `polynomial`, `airy`, `memory`; `params` go to its constructor."""
    check_in("target name", name, sorted(_FACTORIES))
    try:
        return _FACTORIES[name](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for target {name!r}: {err}") from err
