"""LSTM forward and backward: `decaynet.scan_cell` against `torch.nn.LSTM` and `eqx.nn.LSTMCell`.

On a CPU PyTorch's LSTM runs oneDNN kernels, on a GPU cuDNN's: this asks how close the package's
compiled scan comes to a vendor-tuned recurrent kernel on row-by-row and pixel MNIST shapes. Run
with `python -m benchmarks --only lstm` (or `python -m benchmarks.lstm`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from benchmarks.recurrent import (
    RecurrentConfig,
    RecurrentPair,
    SequenceShape,
    TorchPeers,
    run_pair,
    torch_tensor,
)
from decaynet import LSTMCell, PyTorchInit

Config = RecurrentConfig


def make_cell(shape: SequenceShape, key: PRNGKeyArray) -> LSTMCell:
    """An LSTM cell with PyTorch's initialisation, `U(-1/√N, 1/√N)`."""
    return LSTMCell(shape.input_size, shape.hidden_size, init=PyTorchInit(), key=key)


def make_torch_peers(
    torch: ModuleType, cell: LSTMCell, device: str, *, compile: bool = True
) -> TorchPeers:
    """`torch.nn.LSTM` holding the cell's weights; its second bias is zero (ours is their sum).

    It is one fused kernel already (oneDNN on a CPU, cuDNN on a GPU): `compile` does not apply."""
    del compile
    lstm = torch.nn.LSTM(cell.input_size, cell.hidden_size, batch_first=True).to(device)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch_tensor(torch, cell.weight_input, device))
        lstm.weight_hh_l0.copy_(torch_tensor(torch, cell.weight_recurrent, device))
        lstm.bias_ih_l0.copy_(torch_tensor(torch, cell.bias, device))
        lstm.bias_hh_l0.zero_()
    parameters = {
        "weight_input": [lstm.weight_ih_l0],
        "weight_recurrent": [lstm.weight_hh_l0],
        "bias": [lstm.bias_ih_l0, lstm.bias_hh_l0],
    }
    return {"torch": ((lambda x: lstm(x)[0]), parameters)}


def equinox_loss(cell: LSTMCell) -> Callable[[LSTMCell, Array], Array]:
    """The same loss with `eqx.nn.LSTMCell` under `lax.scan`, `vmap`ped over the batch: what a JAX
    user writes without memdyn. Its weights are the cell's (gate order and the one bias agree)."""
    del cell

    def loss(cell: LSTMCell, xs: Float[Array, "batch time input"]) -> Array:
        peer = eqx.nn.LSTMCell(cell.input_size, cell.hidden_size, key=jax.random.key(0))
        peer = eqx.tree_at(
            lambda c: (c.weight_ih, c.weight_hh, c.bias),
            peer,
            (cell.weight_input, cell.weight_recurrent, cell.bias),
        )

        def one(x):
            zeros = jnp.zeros(cell.hidden_size, x.dtype)
            step = lambda state, x_t: (peer(x_t, state), None)
            return jax.lax.scan(step, (zeros, zeros), x)[0][0]

        return 0.5 * jnp.mean(jnp.sum(jax.vmap(one)(xs) ** 2, axis=-1))

    return loss


PAIR = RecurrentPair(
    make_cell=make_cell, make_torch_peers=make_torch_peers, jax_peers=(("equinox", equinox_loss),)
)


def run(config: Config) -> dict[str, Any]:
    """One case per shape: JAX and PyTorch timings, their ratio, GFLOP/s and their agreement."""
    return run_pair(PAIR, config)


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("lstm",)))
