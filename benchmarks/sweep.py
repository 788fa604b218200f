"""LSTM shape sweep: `torch.nn.LSTM`'s time over memdyn's across length, width and batch (heat map).

The `lstm` benchmark times the paper's two shapes; this one asks where in the space of shapes
memdyn's recurrent core (`decaynet.scan_cell`, fused backward) is faster or slower than PyTorch's
fused LSTM kernel (oneDNN on a CPU, cuDNN on a GPU), with the same loss, weights and agreement
check (`benchmarks.recurrent`). It writes the ratios and `DIR/sweep.png`, one heat map per batch
size: sequence length across, hidden size down, colour the PyTorch/memdyn ratio (> 1: memdyn is
faster). Run with `python -m benchmarks --only sweep`.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import jax

from benchmarks import lstm
from benchmarks.recurrent import RecurrentConfig, SequenceShape, measure_shape
from memdyn.internal import check_fields, check_positive
from memlab import save_figure


@dataclasses.dataclass(frozen=True)
class Config:
    """The grid of shapes and the timing repeats.

    Attributes:
        lengths: sequence lengths D (28 is row-by-row MNIST, 784 pixel MNIST).
        hidden_sizes: hidden sizes N of the LSTM.
        batches: batch sizes B.
        input_size: input features M at every step.
        repeats: steady-state repeats per implementation and shape.
        seed: PRNG seed of the weights and inputs.
    """

    lengths: tuple[int, ...] = (28, 196, 784)
    hidden_sizes: tuple[int, ...] = (32, 64, 128, 256)
    batches: tuple[int, ...] = (32, 256)
    input_size: int = 28
    repeats: int = 5
    seed: int = 0

    def __post_init__(self):
        check_fields(self)
        for field in ("lengths", "hidden_sizes", "batches"):
            values = getattr(self, field)
            if not values:
                raise ValueError(f"{field} must name at least one size")
            for value in values:
                check_positive(field, value)
        check_positive("input_size", self.input_size)
        check_positive("repeats", self.repeats)

    def quick(self) -> Config:
        return dataclasses.replace(
            self, lengths=(28, 112), hidden_sizes=(32, 64), batches=(32,), repeats=3
        )

    def shapes(self) -> list[SequenceShape]:
        return [
            SequenceShape(
                f"B{b}-D{d}-N{n}", batch=b, time=d, input_size=self.input_size, hidden_size=n
            )
            for b, d, n in itertools.product(self.batches, self.lengths, self.hidden_sizes)
        ]


def run(config: Config) -> dict[str, Any]:
    """One case per shape of the grid: memdyn's and PyTorch's medians and their ratio."""
    timing = RecurrentConfig(
        shapes=tuple(config.shapes()), repeats=config.repeats, seed=config.seed, variants=False
    )
    key = jax.random.key(config.seed)
    cases = [
        measure_shape(lstm.PAIR, shape, timing, key=jax.random.fold_in(key, index))
        for index, shape in enumerate(timing.shapes)
    ]
    return {"cases": cases}


def plot(record: dict[str, Any], out_dir: str | Path) -> Path:
    """`out_dir/sweep.png`: the `torch/jax` median ratio per shape, one panel per batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    cases = [c for c in record["cases"] if "torch" in c["median_ratio"]]
    if not cases:
        raise ValueError("no PyTorch timings in the record: nothing to plot")
    batches = sorted({c["shape"]["batch"] for c in cases})
    lengths = sorted({c["shape"]["time"] for c in cases})
    hiddens = sorted({c["shape"]["hidden_size"] for c in cases})
    fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches) + 1, 3.6), squeeze=False)
    norm = LogNorm(vmin=0.25, vmax=4.0)
    for ax, batch in zip(axes[0], batches, strict=True):
        grid = np.full((len(hiddens), len(lengths)), np.nan)
        for c in cases:
            if c["shape"]["batch"] == batch:
                i, j = hiddens.index(c["shape"]["hidden_size"]), lengths.index(c["shape"]["time"])
                grid[i, j] = c["median_ratio"]["torch"]
        image = ax.imshow(grid, cmap="RdBu", norm=norm, origin="lower", aspect="auto")
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(lengths)), [str(d) for d in lengths])
        ax.set_yticks(range(len(hiddens)), [str(n) for n in hiddens])
        ax.set(xlabel="sequence length D", title=f"batch {batch}")
    axes[0, 0].set_ylabel("hidden size N")
    ticks = [0.25, 0.5, 1.0, 2.0, 4.0]
    bar = fig.colorbar(image, ax=axes[0].tolist(), label="torch.nn.LSTM time / memdyn time")
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    bar.minorticks_off()
    devices = ", ".join(record["environment"]["devices"])
    threads = record["environment"]["torch"].get("num_threads")
    fig.suptitle(f"LSTM forward + backward ({devices}; torch threads {threads})", fontsize=9)
    return save_figure(fig, Path(out_dir) / "sweep.png")


if __name__ == "__main__":
    from benchmarks.cli import main

    raise SystemExit(main(only=("sweep",)))
