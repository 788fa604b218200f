"""The fused recurrent core's backward pass against `jax.grad` of the plain scan, for every cell and
normalisation, batched, and vmapped over seeds; and against central finite differences (an
independent reference). The PyTorch comparison of the fused path is in test_cells.py."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from decaynet import (
    AutodiffBackward,
    DecayCell,
    FusedBackward,
    LayerNormalisation,
    LSTMCell,
    NoNormalisation,
    PyTorchInit,
    RecurrentBatchNorm,
    scan_cell,
)
from decaynet._recurrence import recurrence

FUSED, AUTODIFF = FusedBackward(), AutodiffBackward()

BATCH, TIME, INPUT, HIDDEN = 4, 6, 3, 5
CELLS = {
    "lstm": lambda key: LSTMCell(INPUT, HIDDEN, init=PyTorchInit(), key=key),
    "decay": lambda key: DecayCell(
        INPUT, HIDDEN, sequence_length=TIME, init=PyTorchInit(), key=key
    ),
}
NORMALISATIONS = {
    "none": lambda: NoNormalisation(),
    "layer": lambda: LayerNormalisation(HIDDEN),
    "batch": lambda: RecurrentBatchNorm(HIDDEN, TIME),
}


def _state(norm, inference):
    """Running statistics away from their zero start, so inference mode reads real values."""
    if not isinstance(norm, RecurrentBatchNorm):
        return None
    state = eqx.nn.State(norm)
    if inference:
        running = state.get(norm.running)
        average = jax.tree.map(
            lambda a: 0.5 + 0.1 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), running.average
        )
        state = state.set(norm.running, running._replace(count=jnp.array(3), average=average))
    return state


def _loss(params, xs, state, backward, inference):
    """Depends on the final state, every step's `q`, `s` and `f`, and the inputs, nonlinearly."""
    cell, norm = params
    state = None if state is None else jax.tree.unflatten(*jax.tree.flatten(state)[::-1])
    final, trajectory, _ = scan_cell(cell, norm, xs, state, inference=inference, backward=backward)
    weights = jnp.linspace(-1.0, 2.0, TIME)[:, None]
    return (
        jnp.sum(jnp.sin(final.q) * final.s)
        + jnp.sum(weights * trajectory.q**2)
        + jnp.sum(jnp.cos(trajectory.s))
        + jnp.sum(trajectory.f * weights)
    )


def _gradients(params, xs, state, backward, inference):
    """Gradients with respect to the parameters and the inputs."""
    grad = eqx.filter_grad(lambda px: _loss(*px, state, backward, inference))
    return eqx.filter_jit(grad)((params, xs))


def _max_relative_gap(a, b):
    """In NumPy: eager JAX operations compile once per leaf's shape."""
    leaves_a = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(a, eqx.is_inexact_array))]
    leaves_b = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(b, eqx.is_inexact_array))]
    assert len(leaves_a) == len(leaves_b) > 0
    scale = max(1.0, max(float(np.max(np.abs(x))) for x in leaves_b))
    return max(float(np.max(np.abs(x - y))) for x, y in zip(leaves_a, leaves_b, strict=True)) / (
        scale
    )


# Every cell and every normalisation (batch norm in training and in inference), each compiled
# pair of programs costing seconds: four combinations cover them all.
@pytest.mark.parametrize(
    "cell_name, norm_name, inference",
    [
        ("lstm", "none", False),
        ("lstm", "batch", False),
        ("decay", "layer", False),
        ("decay", "batch", True),
    ],
)
def test_fused_gradients_equal_the_plain_scans_in_float64(cell_name, norm_name, inference):
    with jax.enable_x64(True):
        cell = CELLS[cell_name](jax.random.key(0))
        norm = NORMALISATIONS[norm_name]()
        xs = jax.random.normal(jax.random.key(1), (BATCH, TIME, INPUT), dtype=float)
        state = _state(norm, inference)
        fused = _gradients((cell, norm), xs, state, FUSED, inference)
        plain = _gradients((cell, norm), xs, state, AUTODIFF, inference)
        assert _max_relative_gap(fused, plain) <= 1e-12
        # Every weight, scale and the input get a gradient: nothing is silently dropped (the
        # batch norm's state index holds its initial statistics, which have none).
        (d_cell, d_norm), d_xs = fused
        scales = [getattr(d_norm, f, None) for f in ("gamma_input", "gamma_recurrent")]
        scales += [getattr(getattr(d_norm, f, None), "weight", None) for f in ("input_norm",)]
        for leaf in [d_cell.weight_input, d_cell.weight_recurrent, d_cell.bias, d_xs, *scales]:
            assert leaf is None or float(np.max(np.abs(np.asarray(leaf)))) > 0


def test_fused_gradients_in_float32():
    """Float32 rounding differs between the two orders of operations; 1e-5 relative bounds it."""
    cell = CELLS["decay"](jax.random.key(2))
    norm = RecurrentBatchNorm(HIDDEN, TIME)
    xs = jax.random.normal(jax.random.key(3), (BATCH, TIME, INPUT))
    state = _state(norm, False)
    fused = _gradients((cell, norm), xs, state, FUSED, False)
    plain = _gradients((cell, norm), xs, state, AUTODIFF, False)
    assert jax.tree.leaves(fused)[0].dtype == jnp.float32
    assert _max_relative_gap(fused, plain) <= 1e-5


def test_fused_gradients_vmapped_over_seeds():
    """Three seeds' cells stacked and `vmap`ped, as the sweeps train them, with batch norm."""
    with jax.enable_x64(True):
        cells = eqx.filter_vmap(CELLS["decay"])(jax.random.split(jax.random.key(4), 3))
        norm = RecurrentBatchNorm(HIDDEN, TIME)
        xs = jax.random.normal(jax.random.key(5), (BATCH, TIME, INPUT), dtype=float)
        state = _state(norm, False)

        def per_seed(backward):
            loss = lambda c: _loss((c, norm), xs, state, backward, False)
            return eqx.filter_jit(eqx.filter_vmap(eqx.filter_grad(loss)))(cells)

        fused, plain = per_seed(FUSED), per_seed(AUTODIFF)
        assert _max_relative_gap(fused, plain) <= 1e-12
        # One seed's gradient, unbatched, in one compiled program (eagerly, each operation of
        # the scans and their gradient would compile).
        one = eqx.filter_jit(
            lambda cells: eqx.filter_grad(lambda c: _loss((c, norm), xs, state, FUSED, False))(
                jax.tree.map(lambda a: a[1] if eqx.is_array(a) else a, cells)
            )
        )(cells)
        np.testing.assert_allclose(fused.weight_recurrent[1], one.weight_recurrent, atol=1e-13)


def test_fused_gradient_matches_central_finite_differences():
    """An independent reference: the directional derivative of the loss along a random direction
    of every parameter and the input, by central differences in float64."""
    with jax.enable_x64(True):
        cell = CELLS["decay"](jax.random.key(6))
        norm = LayerNormalisation(HIDDEN)
        xs = jax.random.normal(jax.random.key(7), (BATCH, TIME, INPUT), dtype=float)
        params = (cell, norm)
        grads = _gradients(params, xs, None, FUSED, False)
        dynamic, static = eqx.partition((params, xs), eqx.is_inexact_array)
        leaves, treedef = jax.tree.flatten(dynamic)
        # The directions and the moved losses each in one compiled program (eagerly, every
        # leaf's draw and every operation of the scan would compile).
        direction = jax.jit(
            lambda key: [
                jax.random.normal(k, leaf.shape, dtype=float)
                for k, leaf in zip(jax.random.split(key, len(leaves)), leaves, strict=True)
            ]
        )(jax.random.key(8))

        @jax.jit
        def moved_loss(h):
            moved = jax.tree.unflatten(
                treedef, [a + h * d for a, d in zip(leaves, direction, strict=True)]
            )
            (p, x) = eqx.combine(moved, static)
            return _loss(p, x, None, FUSED, False)

        along = lambda h: float(moved_loss(h))
        h = 1e-5
        numeric = (along(h) - along(-h)) / (2 * h)
        analytic = sum(
            float(np.vdot(np.asarray(g), np.asarray(d)))
            for g, d in zip(
                jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array)), direction, strict=True
            )
        )
        assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))


def test_second_order_through_the_fused_core():
    """Forward-over-reverse (what `memdyn.hvp` uses) and reverse-over-reverse through the custom
    VJP equal the plain scan's Hessian-vector product."""
    with jax.enable_x64(True):
        cell = CELLS["lstm"](jax.random.key(9))
        xs = jax.random.normal(jax.random.key(10), (BATCH, TIME, INPUT), dtype=float)
        tangent = jax.random.normal(jax.random.key(11), cell.weight_recurrent.shape, dtype=float)

        def loss(w, backward):
            c = eqx.tree_at(lambda c: c.weight_recurrent, cell, w)
            return _loss((c, NoNormalisation()), xs, None, backward, False)

        # Each product in one compiled program (eagerly, each operation would compile).
        w = cell.weight_recurrent
        reference = jax.jit(
            lambda w: jax.jvp(jax.grad(lambda w: loss(w, AUTODIFF)), (w,), (tangent,))[1]
        )(w)
        forward_over_reverse = jax.jit(
            lambda w: jax.jvp(jax.grad(lambda w: loss(w, FUSED)), (w,), (tangent,))[1]
        )(w)
        reverse_over_reverse = jax.jit(
            jax.grad(lambda w: jnp.vdot(jax.grad(loss)(w, FUSED), tangent))
        )(w)
        np.testing.assert_allclose(forward_over_reverse, reference, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(reverse_over_reverse, reference, rtol=1e-11, atol=1e-12)


def test_the_core_on_its_own_and_its_argument_checks():
    """`recurrence` with a user's step: a leaky linear unit, against a NumPy loop."""

    def step(params, time, u, recurrent, carry):
        (h,) = carry
        return (params * h + jnp.tanh(u + recurrent),), h * time

    weight = jnp.array([[0.5, -0.2], [0.1, 0.3]])
    inputs = jax.random.normal(jax.random.key(12), (7, 2, 2))  # (time, batch, hidden)
    initial = (jnp.ones((2, 2)),)
    for backward in (FUSED, AUTODIFF):
        final, (hs,), extras = recurrence(
            step, jnp.float32(0.9), weight, inputs, initial, backward=backward
        )
        h = np.ones((2, 2))
        for t, u in enumerate(np.asarray(inputs)):
            np.testing.assert_allclose(extras[t], h * t, rtol=1e-6)
            h = 0.9 * h + np.tanh(u + h @ np.asarray(weight).T)
            np.testing.assert_allclose(hs[t], h, rtol=1e-5)
        np.testing.assert_allclose(final[0], h, rtol=1e-5)
    with pytest.raises(TypeError, match="backward must be an AbstractBackward"):
        recurrence(step, 0.9, weight, inputs, initial, backward="fused")  # a name, not a strategy
    cell = CELLS["lstm"](jax.random.key(13))
    with pytest.raises(ValueError, match="unroll"):
        scan_cell(cell, NoNormalisation(), jnp.zeros((1, TIME, INPUT)), unroll=0)
