"""Benchmarks of the package's compiled kernels against their PyTorch and SciPy peers.

One module per question, each with a frozen `Config` (defaults: the papers' sizes; `quick()`:
seconds) and a pure `run(config) -> {"cases": [...]}`; `benchmarks.report.execute` times one and
writes `DIR/<name>.json`, and `python -m benchmarks` runs them all and prints a table:

- `lstm`: LSTM forward and backward, `lax.scan` against `torch.nn.LSTM`;
- `decaycell`: the DecayNet cell against a hand-written PyTorch cell;
- `zoh`: exact zero-order-hold stepping of a linear continuous-time RNN against SciPy;
- `limit`: peak float32 matmul throughput and the LSTM's fraction of it;
- `spectra`: dense Hessian `eigh`, HVP-Lanczos and SLQ against a PyTorch double-backward peer
  (it also draws `DIR/spectra.png`).
"""

NAMES = ("lstm", "decaycell", "zoh", "limit", "spectra")
