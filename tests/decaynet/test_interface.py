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
        finals, outputs = jax.vmap(lambda x: memdyn.unroll(cell, x))(xs)
        fused_final, trajectory, _ = scan_cell(cell, NoNormalisation(), xs)
        assert outputs.dtype == jnp.float64
        np.testing.assert_allclose(outputs, trajectory.q, rtol=1e-12, atol=1e-14)
        for name in ("q", "s", "p"):
            ours, fused = getattr(finals, name), getattr(fused_final, name)
            if ours is None:
                assert fused is None and cell_class is LSTMCell
                continue
            np.testing.assert_allclose(ours, fused, rtol=1e-12, atol=1e-14)

        def loss_unrolled(c):
            return jnp.sum(jax.vmap(lambda x: memdyn.unroll(c, x))(xs)[1] ** 2)

        def loss_fused(c):
            return jnp.sum(scan_cell(c, NoNormalisation(), xs)[1].q ** 2)

        unrolled = eqx.filter_grad(loss_unrolled)(cell)
        fused = eqx.filter_grad(loss_fused)(cell)
        for a, b in zip(jax.tree.leaves(unrolled), jax.tree.leaves(fused), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
