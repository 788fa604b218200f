"""The LSTM and DecayNet are `memdyn.AbstractCell`s: `memdyn.unroll` of the cell itself (a plain
`lax.scan` of its step, differentiated by autodiff) gives the states and gradients of the fused
recurrent core (`scan_cell`, a hand-written backward pass), two independent implementations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
from decaynet import DecayCell, LSTMCell, NoNormalisation, PyTorchInit, scan_cell

INPUTS, HIDDEN, TIME, BATCH = 3, 4, 6, 2


@pytest.mark.parametrize("cell_class", [LSTMCell, DecayCell], ids=["lstm", "decay"])
def test_unroll_of_a_gated_cell_equals_the_fused_core(cell_class):
    with jax.enable_x64(True):
        cell = cell_class.for_sequences(
            INPUTS, HIDDEN, sequence_length=TIME, init=PyTorchInit(), key=jax.random.key(0)
        )
        assert isinstance(cell, memdyn.AbstractCell)
        xs = jax.random.normal(jax.random.key(1), (BATCH, TIME, INPUTS))

        # Each implementation's states and gradient in one compiled program of its own
        # (eagerly, each operation outside the scans compiled a program of its own).
        @eqx.filter_jit
        def unrolled(cell):
            def loss(c):
                finals, outputs = jax.vmap(lambda x: memdyn.unroll(c, x))(xs)
                return jnp.sum(outputs**2), (finals, outputs)

            return eqx.filter_grad(loss, has_aux=True)(cell)

        @eqx.filter_jit
        def fused(cell):
            def loss(c):
                final, trajectory, _ = scan_cell(c, NoNormalisation(), xs)
                return jnp.sum(trajectory.q**2), (final, trajectory)

            return eqx.filter_grad(loss, has_aux=True)(cell)

        unrolled_grad, (finals, outputs) = unrolled(cell)
        fused_grad, (fused_final, trajectory) = fused(cell)
        assert outputs.dtype == jnp.float64
        np.testing.assert_allclose(outputs, trajectory.q, rtol=1e-12, atol=1e-14)
        for name in ("q", "s", "p"):
            ours, theirs = getattr(finals, name), getattr(fused_final, name)
            if ours is None:
                assert theirs is None and cell_class is LSTMCell
                continue
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
        leaves = (jax.tree.leaves(unrolled_grad), jax.tree.leaves(fused_grad))
        for a, b in zip(*leaves, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
