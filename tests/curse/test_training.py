"""Optax training loops against closed forms and PyTorch; sweeps compile once and equal loops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from curse._losses import white_noise_loss
from curse._targets import memory_target
from memdyn import make_optimizer, sweep_learning_rates, sweep_seeds, sweep_targets, train

CURVATURE = np.array([[2.0, 0.5], [0.5, 1.0]])
X0 = np.array([1.0, -2.0])


def quadratic(theta, curvature):
    return 0.5 * theta @ curvature @ theta


def test_gradient_descent_equals_closed_form():
    trajectory = train(
        Partial(quadratic, curvature=jnp.asarray(CURVATURE)),
        jnp.asarray(X0),
        make_optimizer("gd", 0.1),
        20,
        save_every=5,
    )
    step = np.eye(2) - 0.1 * CURVATURE
    expected = np.stack([np.linalg.matrix_power(step, k) @ X0 for k in range(0, 21, 5)])
    np.testing.assert_allclose(trajectory.thetas, expected, rtol=1e-12)
    np.testing.assert_array_equal(trajectory.times, [0, 5, 10, 15, 20])
    np.testing.assert_allclose(trajectory.losses, [0.5 * x @ CURVATURE @ x for x in expected])


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_momentum_and_adam_match_pytorch(name):
    torch = pytest.importorskip("torch")
    x = torch.tensor(X0, dtype=torch.float64, requires_grad=True)
    curvature = torch.tensor(CURVATURE, dtype=torch.float64)
    if name == "momentum":
        optimizer = torch.optim.SGD([x], lr=0.05, momentum=0.9)  # v ← βv + g; x ← x − ηv
    else:
        optimizer = torch.optim.Adam([x], lr=0.05, eps=1e-8)
    expected = [x.detach().numpy().copy()]
    for _ in range(12):
        optimizer.zero_grad()
        (0.5 * x @ curvature @ x).backward()
        optimizer.step()
        expected.append(x.detach().numpy().copy())
    trajectory = train(
        Partial(quadratic, curvature=jnp.asarray(CURVATURE)),
        jnp.asarray(X0),
        make_optimizer(name, 0.05),
        12,
        save_every=1,
    )
    np.testing.assert_allclose(trajectory.thetas, np.stack(expected), rtol=1e-10, atol=1e-12)


def test_learning_rate_sweep_compiles_once_and_equals_loop():
    traces = []

    def loss(theta, curvature):
        traces.append(1)  # runs only while tracing
        return 0.5 * theta @ curvature @ theta

    loss_fn = Partial(loss, curvature=jnp.asarray(CURVATURE))
    optimizer = make_optimizer("momentum", 0.01)
    rates = jnp.array([0.01, 0.05, 0.1, 0.2])
    swept = sweep_learning_rates(loss_fn, jnp.asarray(X0), optimizer, rates, 10, save_every=2)
    first = len(traces)
    assert first > 0
    again = sweep_learning_rates(loss_fn, jnp.asarray(X0), optimizer, 2 * rates, 10, save_every=2)
    assert len(traces) == first  # new learning rates reuse the compiled sweep
    assert swept.thetas.shape == (4, 6, 2)
    assert not np.allclose(again.thetas, swept.thetas)
    for k, rate in enumerate(np.asarray(rates)):
        single = train(loss_fn, jnp.asarray(X0), make_optimizer("momentum", rate), 10, save_every=2)
        np.testing.assert_allclose(swept.thetas[k], single.thetas, rtol=1e-12)


def objective(theta, target):
    return white_noise_loss(theta[0], theta[1], target)


def test_omega_sweep_over_batched_targets_equals_loop():
    omegas = jnp.array([0.2, 0.3, 0.5])
    theta0 = (jnp.array([1.0, 0.5, 0.0]), jnp.array([1.0, 2.0, 1.0]))
    optimizer = make_optimizer("gd", 0.05)
    batched = jax.vmap(memory_target)(omegas)
    swept = sweep_targets(objective, theta0, optimizer, batched, 20, save_every=10)
    for k, omega in enumerate(np.asarray(omegas)):
        loss = Partial(objective, target=memory_target(omega))
        single = train(loss, theta0, optimizer, 20, save_every=10)
        np.testing.assert_allclose(swept.losses[k], single.losses, rtol=1e-12)


def test_seed_sweep_uses_each_key():
    def noisy(theta, key):
        return jnp.sum((theta - jax.random.normal(key, theta.shape)) ** 2)

    keys = jax.random.split(jax.random.key(0), 3)
    init = lambda key: jax.random.normal(key, (2,))
    swept = sweep_seeds(noisy, init, make_optimizer("adam", 0.1), keys, 4, save_every=2)
    assert swept.losses.shape == (3, 3)
    assert len(np.unique(np.asarray(swept.thetas[:, 0, 0]))) == 3


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_optimizer("lbfgs", 0.1), "unknown optimizer"),
        (lambda: make_optimizer("gd", -0.1), "learning_rate"),
        (
            lambda: train(jnp.sum, jnp.ones(2), make_optimizer("gd", 0.1), 10, save_every=3),
            "save_every",
        ),
        (
            lambda: train(jnp.sum, jnp.ones(2), make_optimizer("gd", 0.1), 0, save_every=1),
            "num_steps",
        ),
        (
            lambda: train(
                jnp.sum, jnp.array([jnp.nan]), make_optimizer("gd", 0.1), 2, save_every=1
            ),
            "model parameters contains non-finite",
        ),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises((ValueError, RuntimeError), match=message):
        call()
