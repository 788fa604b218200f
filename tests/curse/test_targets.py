"""Targets: Laplace transforms and norms against SciPy quadrature; input validation."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from curse._targets import (
    ExponentialSum,
    GaussianBump,
    PolynomialDecay,
    ScaledAiry,
    TargetSum,
    airy_ai,
    make_target,
    memory_target,
)

S_GRID = np.array([1e-3, 1e-2, 0.1, 1.0, 5.0, 30.0, 200.0])


def quad(f, a=0.0, b=np.inf, points=None):
    value, _ = scipy.integrate.quad(f, a, b, epsabs=0, epsrel=1e-13, limit=1000, points=points)
    return value


def assert_rel(actual, expected, rtol=1e-8):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=0)


def test_exponential_sum_laplace_and_norm():
    a, w = np.array([1.0, -0.7, 0.3]), np.array([0.5, 1.5, 4.0])
    target = ExponentialSum(a, w)
    kernel = lambda t: np.sum(a * np.exp(-w * t))
    expected = [quad(lambda t, s=s: np.exp(-s * t) * kernel(t)) for s in S_GRID]
    assert_rel(target.laplace(jnp.asarray(S_GRID)), expected)
    assert_rel(target.norm_squared(), quad(lambda t: kernel(t) ** 2))


@pytest.mark.parametrize("centre", [0.5, 10.0, 40.0])
def test_gaussian_laplace_including_large_s_times_t0(centre):
    target = GaussianBump(1.3, centre, 0.8)
    kernel = lambda t: 1.3 * np.exp(-((t - centre) ** 2) / (2 * 0.8**2))
    lo, hi = max(centre - 12, 0.0), centre + 12
    # s·t0 up to 8000: exp(−s t0) alone underflows; the log-space form must not.
    expected = [quad(lambda t, s=s: np.exp(-s * t) * kernel(t), lo, hi, [centre]) for s in S_GRID]
    actual = target.laplace(jnp.asarray(S_GRID))
    assert np.all(np.isfinite(actual))
    assert_rel(actual, expected)
    assert_rel(target.norm_squared(), quad(lambda t: kernel(t) ** 2, lo, hi, [centre]))


@pytest.mark.parametrize("omega", [0.05, 0.5, 2.0])
def test_polynomial_laplace_and_norm(omega):
    target = PolynomialDecay(omega)
    kernel = lambda t: (1 + t) ** (-(1 + omega))
    expected = [quad(lambda t, s=s: np.exp(-s * t) * kernel(t)) for s in S_GRID]
    assert_rel(target.laplace(jnp.asarray(S_GRID)), expected)
    if omega < 1:
        # The closed form e^s s^ω Γ(−ω, s) at s = 1, with Γ(−ω, 1) = (e^{−1} − Γ(1 − ω, 1)) / ω.
        upper = scipy.special.gammaincc(1 - omega, 1.0) * scipy.special.gamma(1 - omega)
        assert_rel(target.laplace(1.0), np.e * (np.exp(-1.0) - upper) / omega)
    assert_rel(target.norm_squared(), quad(lambda t: kernel(t) ** 2))


def test_laplace_derivative_matches_quadrature():
    target = memory_target(0.2)
    kernel = lambda t: np.exp(-t) + 0.5 * np.exp(-2 * t) + np.exp(-((t - 5.0) ** 2) / 2)
    for s in [0.3, 2.0]:
        expected = quad(lambda t, s=s: -t * np.exp(-s * t) * kernel(t), 0, 80, [5.0])
        assert_rel(jax.grad(target.laplace)(s), expected)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_airy_kernel_laplace_and_norm():
    s0, t0 = 1.5, 6.0
    target = ScaledAiry(s0, t0)
    ts = np.linspace(0, 12, 7)
    assert_rel(target.kernel(jnp.asarray(ts)), scipy.special.airy(s0 * (ts - t0))[0], 1e-12)
    kernel = lambda t: scipy.special.airy(s0 * (t - t0))[0]
    breaks = list(np.linspace(0, t0, 25))
    for s in [0.01, 0.3, 1.0, 10.0]:
        expected = quad(lambda t, s=s: np.exp(-s * t) * kernel(t), 0, t0 + 30, breaks)
        scale = quad(lambda t, s=s: np.exp(-s * t) * abs(kernel(t)), 0, t0 + 30, breaks)
        assert abs(float(target.laplace(s)) - expected) < 1e-9 * scale
    assert_rel(target.norm_squared(), quad(lambda t: kernel(t) ** 2, 0, t0 + 30, breaks))
    # Derivative of Ai is Ai' (custom JVP), checked against SciPy.
    assert_rel(jax.grad(airy_ai)(0.7), scipy.special.airy(0.7)[1], 1e-12)


def test_target_sum_norm_includes_cross_terms():
    parts = (GaussianBump(0.8, 3.0, 1.0), PolynomialDecay(0.4), ScaledAiry(1.0, 2.0))
    target = TargetSum(parts)
    kernel = lambda t: (
        0.8 * np.exp(-((t - 3.0) ** 2) / 2) + (1 + t) ** -1.4 + scipy.special.airy(t - 2.0)[0]
    )
    expected = quad(lambda t: kernel(t) ** 2, 0, 50, [2.0, 3.0]) + quad(
        lambda t: (1 + t) ** -2.8, 50, np.inf
    )
    assert_rel(target.norm_squared(), expected, 1e-7)


def test_memory_target_vmaps_over_omega():
    omegas = jnp.array([0.1, 0.2, 0.5])
    batch = jax.vmap(memory_target)(omegas)
    norms = jax.vmap(lambda t: t.norm_squared())(batch)
    assert norms.shape == (3,)
    assert_rel(norms[1], memory_target(0.2).norm_squared(), 1e-14)
    np.testing.assert_allclose(batch.terms[1].centre, 1 / omegas)


def test_make_target_builds_each_kind():
    assert isinstance(make_target("polynomial", omega=0.5), PolynomialDecay)
    assert isinstance(make_target("airy", s0=1.0, t0=2.0), ScaledAiry)
    assert isinstance(make_target("memory", omega=0.3), TargetSum)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ExponentialSum([1.0, 2.0], [1.0, 0.0]), "w"),
        (lambda: ExponentialSum([1.0, 2.0], [1.0, -1.0]), "w"),
        (lambda: ExponentialSum([1.0, 2.0], [1.0, 2.0, 3.0]), "w must have shape"),
        (lambda: ExponentialSum([1.0, np.nan], [1.0, 2.0]), "a contains"),
        (lambda: GaussianBump(1.0, 2.0, 0.0), "width"),
        (lambda: GaussianBump(np.nan, 2.0, 1.0), "amplitude"),
        (lambda: PolynomialDecay(0.0), "omega"),
        (lambda: PolynomialDecay(-0.5), "omega"),
        (lambda: ScaledAiry(-1.0, 1.0), "s0"),
        (lambda: memory_target(0.0), "omega"),
        (lambda: memory_target(np.nan), "omega"),
        (lambda: make_target("lorenz"), "unknown target name 'lorenz'"),
        (lambda: make_target("polynomial", rate=1.0), "bad parameters"),
        (lambda: TargetSum(()), "terms"),
    ],
)
def test_bad_input_raises_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_airy_in_float64_where_the_callback_runs_on_another_thread():
    # A program long enough to be dispatched asynchronously runs its host callback on one of
    # XLA's threads, where `jax.enable_x64(True)` (this module's, per thread) does not hold: the
    # float64 results used to come back canonicalised to float32 and be refused (a flaky
    # "Incorrect output dtype" in the suite). Ai and Ai' must come back exact, vmapped too.
    @jax.jit
    def busy(m, x):
        for _ in range(20):
            m = jnp.tanh(m @ m)
        x = x + 0 * m[0, 0]
        return airy_ai(x), jax.vmap(jax.grad(airy_ai))(x)

    xs = np.linspace(-6.0, 4.0, 9)
    ai, aip = busy(jnp.full((300, 300), 1e-3), jnp.asarray(xs))
    assert ai.dtype == aip.dtype == jnp.float64
    expected = scipy.special.airy(xs)
    np.testing.assert_array_equal(np.asarray(ai), expected[0])
    np.testing.assert_array_equal(np.asarray(aip), expected[1])


def test_a_target_method_compiles_once_per_kind_and_shape(caplog):
    """Eagerly, ‖ρ‖² of a memory target compiled each of its operations (seconds); compiled as
    one method, two targets of one kind share one program, and a new float argument is no new
    program. Values against the targets' terms, transformed one by one."""

    def compilations(name, run) -> int:
        caplog.clear()
        with jax.log_compiles(True), caplog.at_level(logging.WARNING):
            run()
        return sum(f"Compiling jit({name})" in record.getMessage() for record in caplog.records)

    jax.clear_caches()  # earlier tests of this module compiled these methods already
    first, second = memory_target(0.3), memory_target(0.15)
    assert compilations("norm_squared", lambda: first.norm_squared()) == 1
    assert compilations("norm_squared", lambda: second.norm_squared()) == 0
    assert compilations("laplace", lambda: [first.laplace(s) for s in (0.5, 1.5)]) == 1
    for s in (0.5, 1.5):
        assert_rel(first.laplace(s), sum(term.laplace(s) for term in first.terms), 1e-14)
