#!/usr/bin/env bash
# Every benchmark on one GPU in one go, for the device machine (issue 15, item 6).
#
# The machine has jax (CUDA), equinox, diffrax, optax and torch installed; this installs the
# package without its dependencies, runs the paper-sized benchmarks with cuDNN as torch.nn.LSTM's
# kernel, and writes the JSON records under $OUT (the device tool's output folder) or
# benchmarks/reference/<device>/ when run by hand. Sized for about 8 minutes on one H200:
#   bash benchmarks/gpu.sh            # all, paper sizes
#   QUICK=1 bash benchmarks/gpu.sh    # every benchmark at its quick size (a smoke test)
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --no-deps -e . >/dev/null
device=$(python -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '-'))")
out=${OUT:-benchmarks/reference/$device}
mkdir -p "$out"
quick=${QUICK:+--quick}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/nvidia-smi.csv" || true
# The recurrent cores first (the targets: LSTM <= 1.2x cuDNN, DecayNet >= 5x the best PyTorch
# cell), then the 16-seed step, the gradient-flow sweep and the spectra.
# pmnist: 4 models x 10 seeds under one vmap each, projected to the 150-epoch protocol (< 1 h?).
timeout 300 python -m benchmarks $quick --out "$out" --only lstm pmnist seeds limit flow \
  || echo "partial: lstm/pmnist/seeds/limit/flow timed out"
# decaycell includes torch.compile of a 784-step loop (minutes of compilation), then the sweep.
timeout 180 python -m benchmarks $quick --out "$out" --only decaycell sweep \
  || echo "partial: decaycell/sweep timed out"
ls -l "$out"
