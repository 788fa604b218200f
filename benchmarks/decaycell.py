"""DecayNet forward and backward: `decaynet.DecayCell` against PyTorch eager, script, compile.

The DecayNet cell (System 2) is the LSTM with its forget gate replaced by a decaying forget polar,
so PyTorch has no fused kernel for it: its peer is the step written out in Python
(`benchmarks._torch_decay`), timed as the best PyTorch user would run it: eager, under
`torch.jit.script` and under `torch.compile`; the fastest is the peer. The benchmark checks that
each computes the same states, loss and gradients as JAX before comparing times.
Run with `python -m benchmarks --only decaycell` (or `python -m benchmarks.decaycell`).
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from jaxtyping import PRNGKeyArray

from benchmarks.recurrent import (
    CELL_FIELDS,
    RecurrentConfig,
    RecurrentPair,
    SequenceShape,
    TorchPeers,
    run_pair,
    torch_tensor,
)
from decaynet import DecayCell, PyTorchInit

if TYPE_CHECKING:  # PyTorch is optional: imported only where a peer runs.
    pass

Config = RecurrentConfig


def make_cell(shape: SequenceShape, key: PRNGKeyArray) -> DecayCell:
    """A DecayNet cell for sequences of `shape.time` steps, PyTorch's initialisation."""
    return DecayCell(
        shape.input_size,
        shape.hidden_size,
        sequence_length=shape.time,
        init=PyTorchInit(),
        key=key,
    )


def make_torch_peers(
    torch: ModuleType, cell: DecayCell, device: str, *, compile: bool = True
) -> TorchPeers:
    """The PyTorch cell holding copies of the JAX cell's weights, three ways: eager, under
    `torch.jit.script`, and (when `compile`) under `torch.compile`; each its own weights."""
    from benchmarks._torch_decay import decay_states

    runners = {"torch-eager": decay_states, "torch-script": torch.jit.script(decay_states)}
    if compile:
        runners["torch-compile"] = torch.compile(decay_states)
    peers = {}
    for name, runner in runners.items():
        weights = {
            field: torch_tensor(torch, getattr(cell, field), device, requires_grad=True)
            for field in CELL_FIELDS
        }

        def forward(x, runner=runner, weights=weights):
            return runner(x, *weights.values(), cell.sequence_length, cell.clip_decrement)

        peers[name] = (forward, {field: [tensor] for field, tensor in weights.items()})
    return peers


PAIR = RecurrentPair(make_cell=make_cell, make_torch_peers=make_torch_peers)


def run(config: Config) -> dict[str, Any]:
    """One case per shape: JAX and PyTorch timings, their ratio, GFLOP/s and their agreement."""
    return run_pair(PAIR, config)


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("decaycell",)))
