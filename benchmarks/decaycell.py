"""DecayNet forward and backward: `decaynet.DecayCell` against a hand-written PyTorch cell.

The DecayNet cell (System 2) is the LSTM with its forget gate replaced by a decaying forget polar,
so PyTorch has no fused kernel for it: its peer is the step written out in Python, iterating over
`x.unbind(1)` (indexing `x[:, t]` would make the backward pass quadratic in the length). The
benchmark checks that both compute the same states, loss and gradients before comparing times.
Run with `python -m benchmarks --only decaycell` (or `python -m benchmarks.decaycell`).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

from jaxtyping import Float, PRNGKeyArray

from benchmarks.recurrent import (
    CELL_FIELDS,
    RecurrentConfig,
    RecurrentPair,
    SequenceShape,
    TorchPeer,
    run_pair,
    torch_tensor,
)
from decaynet import DecayCell

if TYPE_CHECKING:  # PyTorch is optional: imported only where a peer runs.
    import torch

Config = RecurrentConfig


def make_cell(shape: SequenceShape, key: PRNGKeyArray) -> DecayCell:
    """A DecayNet cell for sequences of `shape.time` steps, PyTorch's initialisation."""
    return DecayCell(
        shape.input_size,
        shape.hidden_size,
        sequence_length=shape.time,
        init="pytorch",
        key=key,
    )


def torch_decay_states(
    x: Float[torch.Tensor, "batch time input"],
    weight_input: Float[torch.Tensor, "gates input"],
    weight_recurrent: Float[torch.Tensor, "gates hidden"],
    bias: Float[torch.Tensor, " gates"],
    *,
    sequence_length: int,
    clip_decrement: bool,
) -> Float[torch.Tensor, "batch time hidden"]:
    """System 2 in PyTorch, the maths of `decaynet.DecayCell` on a batch `(B, D, M)`.

    `z_t = W x_t + b + W_R q_{t-1}` (input projection hoisted), gates in the order `(i, f, a, o)`,
    `p_t = p_{t-1} − (π/2D)(z_F + 3)/6` from `p_0 = π/2`, `f_t = sin(clip(p_t, 0, π/2))`,
    `s_t = f_t s_{t-1} + σ(z_I) tanh(z_A)`, `q_t = σ(z_O) tanh(s_t)`. Returns `q_1..q_D`.
    """
    import torch

    batch, hidden = x.shape[0], weight_recurrent.shape[1]
    q = x.new_zeros(batch, hidden)
    s = x.new_zeros(batch, hidden)
    p = x.new_full((batch, hidden), math.pi / 2)
    step = math.pi / (2 * sequence_length)
    states = []
    for projected in (x @ weight_input.T + bias).unbind(1):
        z_input, z_forget, z_cell, z_output = torch.addmm(projected, q, weight_recurrent.T).chunk(
            4, dim=1
        )
        rate = (z_forget + 3.0) / 6.0
        if clip_decrement:
            rate = rate.clamp(0.0, 1.0)
        p = p - step * rate
        s = p.clamp(0.0, math.pi / 2).sin() * s + z_input.sigmoid() * z_cell.tanh()
        q = z_output.sigmoid() * s.tanh()
        states.append(q)
    return torch.stack(states, dim=1)


def make_torch_peer(torch: ModuleType, cell: DecayCell, device: str) -> TorchPeer:
    """The hand-written PyTorch cell holding copies of the JAX cell's weights."""
    weights = {
        field: torch_tensor(torch, getattr(cell, field), device, requires_grad=True)
        for field in CELL_FIELDS
    }

    def forward(x):
        return torch_decay_states(
            x,
            **weights,
            sequence_length=cell.sequence_length,
            clip_decrement=cell.clip_decrement,
        )

    return forward, {field: [tensor] for field, tensor in weights.items()}


PAIR = RecurrentPair(make_cell=make_cell, make_torch_peer=make_torch_peer)


def run(config: Config) -> dict[str, Any]:
    """One case per shape: JAX and PyTorch timings, their ratio, GFLOP/s and their agreement."""
    return run_pair(PAIR, config)


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("decaycell",)))
