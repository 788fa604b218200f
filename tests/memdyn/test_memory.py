"""Memory functions of a model and the memory kernel of data (issue 23, items 1 and 2).

References are independent of the code under test: the closed-form kernel Σ_i c_i b_i a_i^k of a
diagonal linear RNN, SciPy quadrature of a continuous-time kernel over each zero-order-hold cell,
NumPy loops (horizon), central finite differences of an LSTM's outputs, PyTorch's `nn.LSTM` with
copied weights run through radarFudan/Curse-of-memory's `memoryfunction` as written there, the
known kernels that generated synthetic data, and the noise that was added to it.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate

import memdyn
from tests.mapped import (
    PRECISIONS,
    RTOL,
    assert_mapped_equals_members,
    assert_trees_close,
    member,
    precision,
)

# A diagonal linear RNN h_{t+1} = diag(a) h_t + B x_t, y_t = C h_{t+1}: ρ(k) = C diag(a^k) B.
DECAYS = np.array([0.95, 0.7, -0.5, 0.2])
INPUT_WEIGHTS = np.array([[1.0, -0.5], [2.0, 0.3], [0.5, 1.0], [-1.0, 0.2]])
OUTPUT_WEIGHTS = np.array([[0.5, -1.0, 2.0, 0.3], [1.0, 0.2, -0.4, 0.8]])


def linear_rnn(params, xs):
    """A user's diagonal linear RNN (not memdyn's): readout after each update."""
    decays, input_weights, output_weights = params

    def step(h, x):
        h = decays * h + input_weights @ x
        return h, output_weights @ h

    return jax.lax.scan(step, jnp.zeros(decays.shape[0], xs.dtype), xs)[1]


def closed_form_kernel(decays, input_weights, output_weights, lags):
    """ρ(k) = Σ_i C[:, i] B[i, :] a_i^k, `(lag, output, input)`, in NumPy."""
    powers = np.asarray(decays)[None, :] ** np.arange(lags)[:, None]
    return np.einsum("oi,ki,ij->koj", output_weights, powers, input_weights)


def test_linear_rnn_memory_functions_equal_the_closed_form(float64):
    params = (jnp.asarray(DECAYS), jnp.asarray(INPUT_WEIGHTS), jnp.asarray(OUTPUT_WEIGHTS))
    length = 40
    rho = closed_form_kernel(DECAYS, INPUT_WEIGHTS, OUTPUT_WEIGHTS, length)
    scale = np.max(np.abs(rho))
    step = np.array([0.7, -1.3])

    heaviside = memdyn.heaviside_memory(linear_rnn, params, jnp.asarray(step), length)
    # Entry t is lag t + 1 (radarFudan's definition leaves the first jump out).
    expected = np.linalg.norm(rho[1:] @ step, axis=-1)
    np.testing.assert_allclose(heaviside, expected, rtol=0, atol=1e-10 * scale)

    impulse = memdyn.impulse_response(linear_rnn, params, 2, length)
    np.testing.assert_allclose(impulse, rho, rtol=0, atol=1e-10 * scale)

    xs = jax.random.normal(jax.random.key(0), (3, length, 2))
    memory = memdyn.jacobian_memory(linear_rnn, params, xs)
    np.testing.assert_allclose(memory.kernel, rho, rtol=0, atol=1e-10 * scale)
    np.testing.assert_allclose(
        memory.magnitude, np.linalg.norm(rho, axis=(1, 2)), rtol=0, atol=1e-10 * scale
    )


def test_continuous_time_rnn_kernel_is_the_cell_integral_of_its_kernel(float64):
    """dh/dt = −diag(λ) h + b x(t), y = c·h, stepped exactly for inputs constant over each step
    of length Δ (zero-order hold): a_i = e^{−λ_i Δ}, b̃_i = b_i (1 − e^{−λ_i Δ}) / λ_i. Its
    discrete kernel is ∫_{kΔ}^{(k+1)Δ} ρ(s) ds with ρ(s) = Σ_i c_i b_i e^{−λ_i s} (SciPy quad)."""
    rates, inputs, dt = np.array([0.3, 1.0, 4.0]), np.array([1.0, -2.0, 0.5]), 0.25
    outputs = np.array([[0.7, 0.4, -1.5]])
    decays = np.exp(-rates * dt)
    params = (
        jnp.asarray(decays),
        jnp.asarray((inputs * (1 - decays) / rates)[:, None]),
        jnp.asarray(outputs),
    )
    length = 30
    continuous = lambda s: np.sum(outputs[0] * inputs * np.exp(-rates * s))
    cells = np.array(
        [
            scipy.integrate.quad(continuous, k * dt, (k + 1) * dt, epsabs=1e-14, epsrel=1e-13)[0]
            for k in range(length)
        ]
    )
    memory = memdyn.jacobian_memory(linear_rnn, params, jnp.ones((1, length, 1)))
    np.testing.assert_allclose(memory.kernel[:, 0, 0], cells, rtol=0, atol=1e-10)
    heaviside = memdyn.heaviside_memory(linear_rnn, params, jnp.ones(1), length)
    np.testing.assert_allclose(heaviside, np.abs(cells[1:]), rtol=0, atol=1e-10)


def test_memory_horizon_equals_a_loop():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(50, 2, 3)) * 0.9 ** np.arange(50)[:, None, None]
    mass = np.abs(kernel).sum(axis=(1, 2))
    for epsilon in (0.01, 0.05, 0.3):
        expected = next(k for k in range(50) if mass[: k + 1].sum() >= (1 - epsilon) * mass.sum())
        assert int(memdyn.memory_horizon(kernel, epsilon)) == expected
    assert int(memdyn.memory_horizon(np.zeros(7))) == 0
    # Entries at or below a noise floor count as zero.
    floored = np.where(mass > 0.5, mass, 0.0)
    expected = next(k for k in range(50) if floored[: k + 1].sum() >= 0.95 * floored.sum())
    assert int(memdyn.memory_horizon(kernel, noise_floor=0.5)) == expected
    # The window decides: (1 + k)^−1.5 holds 95 % of its mass much later on a longer window.
    tail = (1.0 + np.arange(2000)) ** -1.5
    assert int(memdyn.memory_horizon(tail[:64])) < int(memdyn.memory_horizon(tail)) / 4


def _decay_fits(kernels, noise_floors):
    return jax.jit(jax.vmap(lambda k, f: memdyn.fit_decay(k, noise_floor=f)))(kernels, noise_floors)


def test_fit_decay_tells_exponential_from_power_law_clean_and_noisy(float64):
    lags = np.arange(1, 81)
    sigma = 1e-3
    noise = sigma * np.random.default_rng(1).normal(size=(2, 80))
    exponential, power = 1.5 * 0.8**lags, 2.0 * lags**-1.5
    kernels = jnp.asarray(np.stack([exponential, power, exponential + noise[0], power + noise[1]]))
    fits = _decay_fits(kernels, jnp.asarray([0.0, 0.0, 3 * sigma, 3 * sigma]))
    assert [memdyn.DECAY_TYPES[int(p)] for p in fits.preferred] == [
        "exponential",
        "power law",
        "exponential",
        "power law",
    ]
    np.testing.assert_allclose(fits.exponential_rate[0], -np.log(0.8), rtol=1e-12)
    np.testing.assert_allclose(fits.exponential_scale[0], 1.5, rtol=1e-12)
    np.testing.assert_allclose(fits.power_exponent[1], 1.5, rtol=1e-12)
    np.testing.assert_allclose(fits.power_scale[1], 2.0, rtol=1e-12)
    np.testing.assert_allclose(fits.exponential_r2[0], 1.0, atol=1e-12)
    assert int(fits.points[0]) == 80 and int(fits.points[2]) < 80  # noisy: stopped at the floor
    np.testing.assert_allclose(fits.exponential_rate[2], -np.log(0.8), rtol=0.05)
    np.testing.assert_allclose(fits.power_exponent[3], 1.5, rtol=0.05)


def test_fit_decay_says_neither_for_a_bump():
    """Eq. 125's kernel, a short exponential sum plus a Gaussian bump at t = 1/ω, is neither."""
    t = 0.5 * np.arange(60)
    bump = np.exp(-t) + 0.5 * np.exp(-2 * t) + np.exp(-((t - 10.0) ** 2) / 2)
    assert memdyn.fit_decay(bump).preferred_name() == "neither"
    assert memdyn.fit_decay(np.ones(2)).preferred_name() == "neither"  # too few points


# The kernel of data: y_t = Σ_k ρ_k x_{t−k} + noise, white-noise inputs, sequences from rest.
NUM_LAGS = 40
LAG_TIMES = 0.5 * np.arange(NUM_LAGS)
KNOWN_KERNELS = {
    "exponential sum": 0.5 * (np.exp(-LAG_TIMES) + 0.5 * np.exp(-2 * LAG_TIMES)),
    "power law": (1.0 + np.arange(NUM_LAGS)) ** -1.5,
    # Eq. 125 at ω = 0.1 (bump at t = 10), sampled at Δ = 0.5 and scaled by Δ.
    "eq. 125 bump": 0.5
    * (np.exp(-LAG_TIMES) + 0.5 * np.exp(-2 * LAG_TIMES) + np.exp(-((LAG_TIMES - 10) ** 2) / 2)),
}


def synthetic_data(kernel, key, batch, time, noise):
    """Inputs N(0, 1), outputs the causal convolution with `kernel` from rest plus N(0, noise²);
    the noise is returned too."""
    k1, k2 = jax.random.split(key)
    xs = np.asarray(jax.random.normal(k1, (batch, time)))
    clean = np.stack([np.convolve(x, kernel)[:time] for x in xs])
    added = noise * np.asarray(jax.random.normal(k2, (batch, time)))
    return xs, clean + added, added


def _estimates(kernels, batch, key):
    """One vmapped estimate per kernel (one compilation per data size)."""
    data = [
        synthetic_data(kernel, jax.random.fold_in(key, i), batch, 200, 0.25)
        for i, kernel in enumerate(kernels)
    ]
    xs, ys = (jnp.asarray(np.stack([d[j] for d in data])) for j in (0, 1))
    estimate = lambda x, y, k: memdyn.estimate_memory_kernel(x, y, NUM_LAGS, key=k, resamples=50)
    keys = jax.random.split(key, len(kernels))
    return jax.vmap(estimate)(xs, ys, keys), (xs, ys, keys)


def test_kernel_estimate_recovers_known_kernels_and_improves_with_data(float64):
    kernels = np.stack(list(KNOWN_KERNELS.values()))
    small, (xs, ys, keys) = _estimates(kernels, 16, jax.random.key(3))
    large, _ = _estimates(kernels, 64, jax.random.key(4))
    error = lambda e: (
        np.linalg.norm(np.asarray(e.kernel) - kernels, axis=1) / np.linalg.norm(kernels, axis=1)
    )
    small_error, large_error = error(small), error(large)
    # 4× the sequences halve the standard error; 1.5 leaves room for one draw's luck.
    assert np.all(small_error < 0.05), small_error
    assert np.all(large_error < small_error / 1.5), (small_error, large_error)
    assert np.all(np.asarray(large.explained_variance) > 0.9)
    # The same decay fit and horizon as a model's, above a noise floor of twice the bootstrap
    # standard error: the bump's window stops at the dip before it, and its mass beyond the
    # window makes it "neither". (The power law's horizon is cut short by the floor: its tail
    # drowns in the noise.)
    decay = jax.jit(
        jax.vmap(
            lambda k, f: (
                memdyn.fit_decay(k, noise_floor=f),
                memdyn.memory_horizon(k, noise_floor=f),
            )
        )
    )
    fits, horizons = decay(large.kernel, 2 * large.standard_error)
    assert [memdyn.DECAY_TYPES[int(p)] for p in fits.preferred] == [
        "exponential",
        "power law",
        "neither",
    ]
    assert float(fits.tail_mass[2]) > 0.5
    assert [int(horizons[0]), int(horizons[2])] == [
        int(memdyn.memory_horizon(kernels[0])),
        int(memdyn.memory_horizon(kernels[2])),
    ]
    # A member of the vmapped estimate equals the estimate run alone.
    alone = memdyn.estimate_memory_kernel(xs[2], ys[2], NUM_LAGS, key=keys[2], resamples=50)
    assert_trees_close(member(small, 2, size=3), alone, rtol=1e-10, what="estimate")


def test_bootstrap_intervals_cover_near_nominal(float64):
    """Over 50 independent small problems (one vmap), the 90 % intervals of 6 lags cover the
    true kernel in a fraction near 0.9 of the 300 cases, and the bootstrap standard errors
    match the spread of the estimates over the problems."""
    repeats, batch, time, lags = 50, 48, 20, 6
    kernel = 0.5 * 0.7 ** np.arange(lags)
    data = [
        synthetic_data(kernel, jax.random.key(100 + r), batch, time, 1.0) for r in range(repeats)
    ]
    xs, ys = (jnp.asarray(np.stack([d[j] for d in data])) for j in (0, 1))
    estimate = lambda x, y, k: memdyn.estimate_memory_kernel(x, y, lags, key=k, resamples=400)
    estimates = jax.vmap(estimate)(xs, ys, jax.random.split(jax.random.key(5), repeats))
    covered = (np.asarray(estimates.lower) <= kernel) & (kernel <= np.asarray(estimates.upper))
    coverage = covered.mean()
    # Binomial standard error of 300 independent cases is 0.017, more as the lags of one
    # problem are correlated: ± 0.07. (Measured 0.883 here, and 0.89 over 200 problems.)
    assert abs(coverage - 0.9) < 0.07, coverage
    # The standard deviation of 50 estimates is itself uncertain by ~10 %.
    ratio = np.std(np.asarray(estimates.kernel), axis=0) / np.mean(estimates.standard_error, 0)
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio


def test_explained_variance_flags_a_nonlinear_target(float64):
    """Held-out R² of a linear target equals 1 − (noise power / output variance) computed from
    the added noise; for y_t = x_t x_{t−1}, uncorrelated with every lagged input, it is ≈ 0."""
    batch, time, lags = 40, 100, 8
    kernel = 0.8 ** np.arange(lags)
    xs, ys, noise = synthetic_data(kernel, jax.random.key(6), batch, time, 0.5)
    nonlinear = xs * np.concatenate([np.zeros((batch, 1)), xs[:, :-1]], axis=1)
    both = jax.vmap(lambda y: memdyn.estimate_memory_kernel(xs, y, lags, key=jax.random.key(7)))(
        jnp.asarray(np.stack([ys, nonlinear]))
    )
    linear_share = 1 - np.sum(noise**2) / np.sum((ys - ys.mean()) ** 2)
    np.testing.assert_allclose(both.explained_variance[0], linear_share, atol=0.02)
    assert float(both.explained_variance[1]) < 0.05


# An LSTM (eqx.nn.LSTMCell and a linear readout of every hidden state): a nonlinear model.


class LSTMModel(eqx.Module):
    cell: eqx.nn.LSTMCell
    readout: eqx.nn.Linear

    def __init__(self, inputs, hidden, outputs, *, key):
        k1, k2 = jax.random.split(key)
        self.cell = eqx.nn.LSTMCell(inputs, hidden, key=k1)
        self.readout = eqx.nn.Linear(hidden, outputs, key=k2)


def lstm(model, xs):
    hidden = model.cell.hidden_size
    zeros = jnp.zeros(hidden, xs.dtype)

    def step(carry, x):
        carry = model.cell(x, carry)
        return carry, model.readout(carry[0])

    return jax.lax.scan(step, (zeros, zeros), xs)[1]


def test_lstm_jacobian_memory_equals_central_differences(float64):
    model = LSTMModel(2, 4, 2, key=jax.random.key(8))
    xs = np.asarray(jax.random.normal(jax.random.key(9), (3, 6, 2)))
    memory = memdyn.jacobian_memory(lstm, model, jnp.asarray(xs))
    last = jax.jit(jax.vmap(lambda x: lstm(model, x)[-1]))
    h = 1e-6
    batch, time, inputs = xs.shape
    jacobians = np.zeros((batch, time, 2, inputs))  # (sequence, lag, output, input)
    for t in range(time):
        for j in range(inputs):
            moved = np.zeros_like(xs)
            moved[:, t, j] = h
            difference = (np.asarray(last(xs + moved)) - np.asarray(last(xs - moved))) / (2 * h)
            jacobians[:, time - 1 - t, :, j] = difference
    np.testing.assert_allclose(memory.kernel, jacobians.mean(axis=0), rtol=0, atol=1e-8)
    magnitude = np.linalg.norm(jacobians, axis=(2, 3)).mean(axis=0)
    np.testing.assert_allclose(memory.magnitude, magnitude, rtol=0, atol=1e-8)


def test_lstm_heaviside_memory_equals_radarfudan_in_pytorch(float64):
    """radarFudan/Curse-of-memory's `memoryfunction` (src/memoryfunction.py), run as written
    there on `nn.LSTM` + `nn.Linear` with the JAX model's weights (float64, 128 steps instead
    of 1024), with and without subtracting the zero-input outputs."""
    torch = pytest.importorskip("torch", reason="PyTorch (the bench extra) is not installed")
    inputs, hidden, length = 2, 5, 128
    model = LSTMModel(inputs, hidden, inputs, key=jax.random.key(10))

    class Reference(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, hidden, batch_first=True).double()
            self.linear = torch.nn.Linear(hidden, inputs).double()

        def forward(self, x):
            out, state = self.lstm(x)
            return self.linear(out), state

    reference = Reference()
    copy = lambda a: torch.from_numpy(np.array(a))
    with torch.no_grad():
        reference.lstm.weight_ih_l0.copy_(copy(model.cell.weight_ih))
        reference.lstm.weight_hh_l0.copy_(copy(model.cell.weight_hh))
        reference.lstm.bias_ih_l0.copy_(copy(model.cell.bias))
        reference.lstm.bias_hh_l0.zero_()
        reference.linear.weight.copy_(copy(model.readout.weight))
        reference.linear.bias.copy_(copy(model.readout.bias))

    torch.manual_seed(233)
    x = torch.randn(1, inputs)[:, None] * torch.ones(length)[None, :, None]  # Heaviside inputs
    with torch.no_grad():
        y, _ = reference(x.double())
        y0, _ = reference(torch.zeros_like(x).double())
    memory_function = lambda y: torch.linalg.norm(torch.abs(y[:, 1:] - y[:, :-1])[0], dim=-1)
    expected, expected_baseline = memory_function(y).numpy(), memory_function(y - y0).numpy()

    step = jnp.asarray(x[0, 0].double().numpy())
    actual = memdyn.heaviside_memory(lstm, model, step, length)
    baseline = memdyn.heaviside_memory(lstm, model, step, length, subtract_baseline=True)
    assert actual.shape == (length - 1,)
    np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(baseline, expected_baseline, rtol=1e-10, atol=1e-14)
    assert np.max(np.abs(expected - expected_baseline)) > 1e-3  # the baseline matters here


@pytest.mark.parametrize("name", PRECISIONS)
def test_memory_functions_vmapped_over_models_equal_the_loop(name):
    with precision(name) as dtype:
        models = eqx.filter_vmap(lambda k: LSTMModel(3, 5, 2, key=k))(
            jax.random.split(jax.random.key(11), 3)
        )
        xs = jax.random.normal(jax.random.key(12), (4, 6, 3), dtype)
        step = jnp.asarray([0.5, -1.0, 0.3], dtype)

        def functions(model):
            memory = memdyn.jacobian_memory(lstm, model, xs)
            return (
                memdyn.heaviside_memory(lstm, model, step, 6, subtract_baseline=True),
                memdyn.impulse_response(lstm, model, 3, 6),
                memory,
                memdyn.memory_horizon(memory.magnitude),
                memdyn.fit_decay(memory.magnitude),
            )

        mapped = eqx.filter_jit(jax.vmap(functions))(models)
        one = eqx.filter_jit(functions)
        members = [one(member(models, i, size=3)) for i in range(3)]
        assert mapped[0].dtype == dtype
        assert_mapped_equals_members(mapped, members, rtol=RTOL[name] * 10, size=3)


def test_jacobian_memory_compiles_once_for_new_parameters():
    traces = []

    def counted(params, xs):
        traces.append(None)
        return linear_rnn(params, xs)

    xs = jnp.ones((2, 5, 2))
    for scale in (1.0, 0.5):
        params = tuple(
            jnp.asarray(scale * w, jnp.float32) for w in (DECAYS, INPUT_WEIGHTS, OUTPUT_WEIGHTS)
        )
        memdyn.jacobian_memory(counted, params, xs)
    assert len(traces) == 1


def _returns_a_vector(params, xs):
    return linear_rnn(params, xs)[:, 0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p: memdyn.jacobian_memory(linear_rnn, p, jnp.ones((5, 2))), ValueError, "xs must"),
        (
            lambda p: memdyn.jacobian_memory(_returns_a_vector, p, jnp.ones((1, 5, 2))),
            ValueError,
            "apply must return",
        ),
        (
            lambda p: memdyn.jacobian_memory(linear_rnn, p, jnp.ones((1, 5, 2), bool)),
            TypeError,
            "xs",
        ),
        (
            lambda p: memdyn.jacobian_memory(linear_rnn, p, jnp.full((1, 5, 2), jnp.nan)),
            ValueError,
            "xs",
        ),
        (
            lambda p: memdyn.heaviside_memory(linear_rnn, p, jnp.ones(2), 1),
            memdyn.ConfigError,
            "length",
        ),
        (
            lambda p: memdyn.heaviside_memory(linear_rnn, p, jnp.ones((1, 2)), 5),
            ValueError,
            "step_input",
        ),
        (
            lambda p: memdyn.heaviside_memory(linear_rnn, (p[0] * jnp.nan, *p[1:]), jnp.ones(2), 5),
            ValueError,
            "params",
        ),
        (lambda p: memdyn.impulse_response(linear_rnn, p, 0, 5), memdyn.ConfigError, "input_size"),
        (
            lambda p: memdyn.impulse_response(linear_rnn, p, 2, 5, dtype=jnp.float16),
            TypeError,
            "dtype",
        ),
        (lambda p: memdyn.memory_horizon(jnp.ones(5), 1.5), memdyn.ConfigError, "epsilon"),
        (lambda p: memdyn.memory_horizon(jnp.ones(()), 0.1), ValueError, "kernel"),
        (
            lambda p: memdyn.fit_decay(jnp.ones(5), noise_floor=jnp.ones(3)),
            ValueError,
            "noise_floor",
        ),
        (lambda p: memdyn.fit_decay(jnp.ones(5), lags=-jnp.ones(5)), ValueError, "lags"),
        (lambda p: memdyn.fit_decay(jnp.ones(5), min_r2=2.0), memdyn.ConfigError, "min_r2"),
        (lambda p: memdyn.fit_decay(jnp.ones(5), max_tail_mass=0), memdyn.ConfigError, "max_tail"),
        (
            lambda p: memdyn.memory_horizon(jnp.ones(5), noise_floor=jnp.ones(2)),
            ValueError,
            "noise",
        ),
    ],
)
def test_memory_functions_reject_bad_input(call, error, match):
    params = tuple(jnp.asarray(w, jnp.float32) for w in (DECAYS, INPUT_WEIGHTS, OUTPUT_WEIGHTS))
    with pytest.raises(error, match=match):
        call(params)


@pytest.mark.parametrize(
    "change, error, match",
    [
        ({"xs": jnp.ones(20)}, ValueError, "xs must"),
        ({"ys": jnp.ones((6, 19))}, ValueError, "ys must"),
        ({"ys": jnp.full((6, 20), jnp.inf)}, ValueError, "ys"),
        ({"num_lags": 21}, memdyn.ConfigError, "num_lags"),
        ({"folds": 7}, memdyn.ConfigError, "folds"),
        ({"resamples": 1}, memdyn.ConfigError, "resamples"),
        ({"level": 1.0}, memdyn.ConfigError, "level"),
        ({"penalties": jnp.asarray([1.0, -1.0])}, ValueError, "penalties"),
    ],
)
def test_kernel_estimate_rejects_bad_input(change, error, match):
    arguments = {"xs": jnp.ones((6, 20)), "ys": jnp.ones((6, 20)), "num_lags": 4, "folds": 5}
    arguments.update(change)
    with pytest.raises(error, match=match):
        memdyn.estimate_memory_kernel(**arguments, key=jax.random.key(0))
