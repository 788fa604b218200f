"""The LSTM and DecayNet under memdyn's recurrent interface (`GatedCellStep`): `memdyn.unroll`
(a plain `lax.scan`, differentiated by autodiff) gives the states and gradients of the fused
recurrent core (`scan_cell`, a hand-written backward pass), two independent implementations."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import memdyn
from decaynet import DecayCell, GatedCellStep, LSTMCell

INPUTS, HIDDEN, TIME = 3, 4, 6


@pytest.mark.parametrize("cell_class", [LSTMCell, DecayCell], ids=["lstm", "decay"])
def test_unroll_of_a_gated_cell_equals_the_fused_core(cell_class):
    with jax.enable_x64(True):
        cell = cell_class.for_sequences(
            INPUTS, HIDDEN, sequence_length=TIME, init="pytorch", key=jax.random.key(0)
        )
        xs = jax.random.normal(jax.random.key(1), (TIME, INPUTS))
        final, outputs = memdyn.unroll(GatedCellStep(cell), xs)
        fused_final, trajectory = cell.scan(xs)
        assert isinstance(GatedCellStep(cell), memdyn.AbstractCell)
        np.testing.assert_allclose(outputs, trajectory.q, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(final.s, fused_final.s, rtol=1e-12, atol=1e-14)

        def loss_unrolled(c):
            return jnp.sum(memdyn.unroll(GatedCellStep(c), xs)[1] ** 2)

        def loss_fused(c):
            return jnp.sum(c.scan(xs)[1].q ** 2)

        unrolled = eqx.filter_grad(loss_unrolled)(cell)
        fused = eqx.filter_grad(loss_fused)(cell)
        for a, b in zip(jax.tree.leaves(unrolled), jax.tree.leaves(fused), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
