"""The recurrent interface: the GRU against `eqx.nn.GRUCell` and PyTorch's `nn.GRU` with copied
weights, the LRU against a NumPy loop in complex arithmetic, a user's cell through `unroll` and
memdyn's analyses, and `unroll` vmapped over a batch against the examples alone, in both
precisions."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn

INPUTS, HIDDEN, TIME = 3, 5, 7


@pytest.fixture(scope="module", autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def _sequence(time=TIME):
    return jax.random.normal(jax.random.key(1), (time, INPUTS))


def test_gru_equals_equinox_gru_cell_with_the_same_weights():
    cell = memdyn.GRUCell(INPUTS, HIDDEN, key=jax.random.key(0))
    reference = eqx.nn.GRUCell(INPUTS, HIDDEN, key=jax.random.key(9))
    reference = eqx.tree_at(
        lambda c: (c.weight_ih, c.weight_hh, c.bias, c.bias_n),
        reference,
        (cell.weight_input, cell.weight_recurrent, cell.bias, cell.bias_new),
    )
    xs = _sequence()
    final, outputs = memdyn.unroll(cell, xs)
    hidden, expected = jnp.zeros(HIDDEN), []
    for x in xs:
        hidden = reference(x, hidden)
        expected.append(hidden)
    np.testing.assert_allclose(outputs, np.stack(expected), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(final, expected[-1], rtol=1e-13, atol=1e-15)


def test_gru_equals_pytorch_nn_gru_with_copied_weights():
    torch = pytest.importorskip("torch", reason="PyTorch (the bench extra) is not installed")
    reference = torch.nn.GRU(INPUTS, HIDDEN, batch_first=True).double()
    weights = {name: p.detach().numpy() for name, p in reference.named_parameters()}
    bias_input, bias_hidden = weights["bias_ih_l0"], weights["bias_hh_l0"]
    cell = memdyn.GRUCell(INPUTS, HIDDEN, key=jax.random.key(0))
    cell = eqx.tree_at(
        lambda c: (c.weight_input, c.weight_recurrent, c.bias, c.bias_new),
        cell,
        (
            jnp.asarray(weights["weight_ih_l0"]),
            jnp.asarray(weights["weight_hh_l0"]),
            # reset and update gates: b_ih + b_hh; the new gate: b_in here, b_hn inside r ⊙ (.)
            jnp.asarray(bias_input + np.concatenate([bias_hidden[: 2 * HIDDEN], np.zeros(HIDDEN)])),
            jnp.asarray(bias_hidden[2 * HIDDEN :]),
        ),
    )
    xs = np.array(_sequence())  # a writable copy for torch
    outputs, _ = reference(torch.from_numpy(xs)[None])
    _, ours = memdyn.unroll(cell, jnp.asarray(xs))
    np.testing.assert_allclose(ours, outputs[0].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_lru_equals_a_numpy_loop_in_complex_arithmetic():
    cell = memdyn.LRUCell(INPUTS, 6, r_min=0.4, r_max=0.95, key=jax.random.key(2))
    lam = np.exp(-np.exp(np.asarray(cell.nu_log)) + 1j * np.exp(np.asarray(cell.theta_log)))
    gamma = np.exp(np.asarray(cell.gamma_log))
    b = np.asarray(cell.input_real) + 1j * np.asarray(cell.input_imag)
    c = np.asarray(cell.output_real) + 1j * np.asarray(cell.output_imag)
    d = np.asarray(cell.skip)
    assert np.all((0.4 - 1e-12 <= np.abs(lam)) & (np.abs(lam) <= 0.95 + 1e-12))
    np.testing.assert_allclose(gamma, np.sqrt(1 - np.abs(lam) ** 2), rtol=1e-12)
    xs = np.asarray(_sequence(time=20))
    state, expected = np.zeros(6, complex), []
    for u in xs:
        state = lam * state + gamma * (b @ u)
        expected.append((c @ state).real + d * u)
    (real, imag), outputs = memdyn.unroll(cell, jnp.asarray(xs))
    np.testing.assert_allclose(outputs, np.stack(expected), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(real + 1j * imag, state, rtol=1e-12, atol=1e-13)


class LeakyCell(memdyn.AbstractCell):
    """A user's cell, written against the interface only."""

    weight: jax.Array
    leak: float = eqx.field(static=True)

    def initial_carry(self):
        return jnp.zeros(self.weight.shape[0])

    def __call__(self, carry, x):
        carry = (1 - self.leak) * carry + self.leak * jnp.tanh(self.weight @ jnp.append(carry, x))
        return carry, carry


def test_a_users_cell_goes_through_unroll_training_and_curvature():
    cell = LeakyCell(0.5 * jax.random.normal(jax.random.key(3), (4, 4 + INPUTS)), 0.3)
    xs = jax.random.normal(jax.random.key(4), (8, TIME, INPUTS))
    ys = xs[:, 2, 0]  # recall an early input

    def loss(cell):
        finals = jax.vmap(lambda x: memdyn.unroll(cell, x)[0])(xs)
        return jnp.mean((finals[:, 0] - ys) ** 2)

    run = memdyn.train(loss, cell, memdyn.make_optimizer("adam", 0.05), 60, save_every=30)
    assert bool(run.finished) and run.losses[-1] < 0.8 * run.losses[0]
    operator = memdyn.HessianOperator(loss, cell)
    flat, unravel = jax.flatten_util.ravel_pytree(cell.weight)
    hessian = jax.hessian(lambda v: loss(eqx.tree_at(lambda c: c.weight, cell, unravel(v))))
    dense = jax.jit(hessian)(flat)  # one program: eagerly, each operation compiles on its own
    np.testing.assert_allclose(operator.as_matrix(), dense, rtol=1e-10, atol=1e-12)


@pytest.mark.canary
@pytest.mark.parametrize("name, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("kind", ["gru", "lru"])
def test_unroll_vmapped_over_a_batch_equals_each_example_alone(kind, name, rtol):
    dtype = jnp.dtype(name)
    make = {"gru": memdyn.GRUCell, "lru": memdyn.LRUCell}[kind]
    cell = make(INPUTS, HIDDEN, key=jax.random.key(5), dtype=dtype)
    batch = jax.random.normal(jax.random.key(6), (4, TIME, INPUTS), dtype)
    loss = lambda c, xs: jnp.sum(memdyn.unroll(c, xs)[1] ** 2)
    grad = jax.jit(jax.grad(loss))
    mapped = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(cell, batch)
    for i in range(batch.shape[0]):
        alone = grad(cell, batch[i])
        for got, want in zip(jax.tree.leaves(mapped), jax.tree.leaves(alone), strict=True):
            assert got.dtype == dtype
            np.testing.assert_allclose(got[i], want, rtol=rtol, atol=rtol * 1e-2)


def test_unroll_names_a_bad_sequence():
    cell = memdyn.GRUCell(INPUTS, HIDDEN, key=jax.random.key(0))
    with pytest.raises(ValueError, match="xs"):
        memdyn.unroll(cell, jnp.zeros((TIME, INPUTS, 1)))
    with pytest.raises(ValueError, match="r_min"):
        memdyn.LRUCell(INPUTS, 4, r_min=0.9, r_max=0.5, key=jax.random.key(0))
