"""LSTM forward and backward: `decaynet.LSTMCell` through `lax.scan` against `torch.nn.LSTM`.

On a CPU PyTorch's LSTM runs oneDNN kernels, on a GPU cuDNN's: this asks how close the package's
compiled scan comes to a vendor-tuned recurrent kernel on row-by-row and pixel MNIST shapes. Run
with `python -m benchmarks --only lstm` (or `python -m benchmarks.lstm`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from jaxtyping import PRNGKeyArray

from benchmarks.recurrent import (
    RecurrentConfig,
    RecurrentPair,
    SequenceShape,
    TorchPeer,
    run_pair,
    torch_tensor,
)
from decaynet import LSTMCell

Config = RecurrentConfig


def make_cell(shape: SequenceShape, key: PRNGKeyArray) -> LSTMCell:
    """An LSTM cell with PyTorch's initialisation, `U(-1/√N, 1/√N)`."""
    return LSTMCell(shape.input_size, shape.hidden_size, init="pytorch", key=key)


def make_torch_peer(torch: ModuleType, cell: LSTMCell, device: str) -> TorchPeer:
    """`torch.nn.LSTM` holding the cell's weights; its second bias is zero (ours is their sum)."""
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
    return (lambda x: lstm(x)[0]), parameters


PAIR = RecurrentPair(make_cell=make_cell, make_torch_peer=make_torch_peer)


def run(config: Config) -> dict[str, Any]:
    """One case per shape: JAX and PyTorch timings, their ratio, GFLOP/s and their agreement."""
    return run_pair(PAIR, config)


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("lstm",)))
