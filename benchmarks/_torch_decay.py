"""System 2 (DecayNet) in PyTorch, as a PyTorch user would write it: one function that runs eager,
under `torch.jit.script` and under `torch.compile`. Imported only where PyTorch is (the `bench`
extra); plain `torch.Tensor` annotations, as TorchScript requires."""

import math

import torch


def decay_states(
    x: torch.Tensor,
    weight_input: torch.Tensor,
    weight_recurrent: torch.Tensor,
    bias: torch.Tensor,
    sequence_length: int,
    clip_decrement: bool,
) -> torch.Tensor:
    """The maths of `decaynet.DecayCell` on a batch `x` of shape `(B, D, M)`; returns `q_1..q_D`.

    `z_t = W x_t + b + W_R q_{t-1}` (input projection hoisted), gates in the order `(i, f, a, o)`,
    `p_t = p_{t-1} − (π/2D)(z_F + 3)/6` from `p_0 = π/2`, `f_t = sin(clip(p_t, 0, π/2))`,
    `s_t = f_t s_{t-1} + σ(z_I) tanh(z_A)`, `q_t = σ(z_O) tanh(s_t)`. The loop runs over
    `unbind(1)` (indexing `x[:, t]` would make the backward pass quadratic in the length).
    """
    batch, hidden = x.shape[0], weight_recurrent.shape[1]
    q = x.new_zeros([batch, hidden])
    s = x.new_zeros([batch, hidden])
    p = torch.full_like(q, math.pi / 2)
    step = math.pi / (2 * sequence_length)
    states: list[torch.Tensor] = []
    for projected in (x @ weight_input.t() + bias).unbind(1):
        gates = torch.addmm(projected, q, weight_recurrent.t()).chunk(4, dim=1)
        rate = (gates[1] + 3.0) / 6.0
        if clip_decrement:
            rate = rate.clamp(0.0, 1.0)
        p = p - step * rate
        s = p.clamp(0.0, math.pi / 2).sin() * s + gates[0].sigmoid() * gates[2].tanh()
        q = gates[3].sigmoid() * s.tanh()
        states.append(q)
    return torch.stack(states, dim=1)
