"""Benchmarks of the package's compiled kernels against their PyTorch and SciPy peers.

One module per question, each with a frozen `Config` (defaults: the papers' sizes; `quick()`:
seconds) and a pure `run(config) -> {"cases": [...]}`; `benchmarks.report.execute` times one and
writes `DIR/<name>.json`, and `python -m benchmarks` runs them all and prints a table:

- `lstm`: LSTM forward and backward, `decaynet.scan_cell` (fused and plain backward) against
  `torch.nn.LSTM` and `eqx.nn.LSTMCell` under `lax.scan`;
- `decaycell`: the DecayNet cell against a PyTorch cell, eager, TorchScript and `torch.compile`;
- `zoh`: exact zero-order-hold stepping of a linear continuous-time RNN against SciPy;
- `limit`: peak float32 matmul throughput and the LSTM's fraction of it;
- `spectra`: dense Hessian `eigh`, HVP-Lanczos and SLQ against a PyTorch double-backward peer
  (it also draws `DIR/spectra.png`);
- `flow`: a gradient-flow sweep over ω (Fig. 2), one vmapped Diffrax solve against SciPy's
  `solve_ivp` one ω at a time;
- `seeds`: one training step of 16 Table 2 classifiers, vmapped, against PyTorch one by one;
- `sweep`: the LSTM over a grid of lengths, widths and batches, PyTorch's time over memdyn's as a
  heat map (`DIR/sweep.png`);
- `pmnist`: one vmapped training step of 10 seeds of each of §6.1's four models, projected to the
  150-epoch permuted-MNIST protocol (no peer: does it fit a device?);
- `data_parallel`: one LSTM training step with its batch split over 1 and 2 host devices (each
  count in its own process) against `torch.nn.LSTM` at 1 and 2 threads;
- `processes`: the same step on two devices of one process and of a two-process
  `jax.distributed` job: the cost of the processes.
"""

NAMES = (
    "lstm",
    "decaycell",
    "zoh",
    "limit",
    "spectra",
    "flow",
    "seeds",
    "sweep",
    "pmnist",
    "data_parallel",
    "processes",
)
