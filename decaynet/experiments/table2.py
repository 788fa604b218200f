"""`decaynet table2`: Table 2 and Fig. 7 — row-by-row MNIST and Fashion-MNIST, many seeds at once.

Each row (dataset, cell, hidden size) trains `seeds` networks at once (one compiled step, split over
the cores) for 1 epoch with Adam (lr 0.01) on the full training set, then reports test accuracy on
the full test set (mean ± sd, best) and the parameter count. Rows come in pairs on one dataset (the
paper's: LSTM, then DecayNet); Welch's and Student's two-sample t-tests compare the two rows of each
pair (`p_value` is Welch's). The building blocks `decaynet.row_classifier` and
`decaynet._rows.train_row` (a row's training, which `decaynet memory` shares) take any cell class: a
gated cell (LSTM, DecayNet) runs in the fused `scan_cell`, any `memdyn.AbstractCell` (`gru`, a true
GRU; `lru`, the linear recurrent unit; a user's cell) with `memdyn.unroll` and autodiff, its head on
the cell's last output (`decaynet.CellClassifier`).

Batch size: the paper does not state it. We use 64 — the default of PyTorch's MNIST example (the
paper's code was PyTorch), giving 937 Adam steps in the epoch; with larger batches (e.g. 100, 600
steps) 1 epoch at lr 0.01 is noticeably further from convergence, and the paper's ~95% after one
epoch needs several hundred steps. Paper's normalisation: MNIST pixels/255, Fashion (x-0.5)/0.5.
Checkpoints per row go to `out_dir/checkpoints/table2_*`; re-running with the same `--out`
resumes, `--fresh` starts over.

Initialisation: App. C does not state one; the U(−1, 1) weights of §6.1 (`init="paper"`) give
92–93 % on MNIST with a wide seed spread (20 seeds: LSTM-32 92.05 ± 1.16, DecayNet-32
93.22 ± 0.91), while PyTorch's default U(±1/√H) (`init="pytorch"`, what `nn.LSTM` gives a PyTorch
user) gives LSTM-32 94.94 ± 0.70 and DecayNet-32 95.23 ± 0.29 over 6 seeds, next to the paper's
95.1 ± 0.2 and 95.6 ± 0.1. We therefore default to `"pytorch"` here; `--init paper` runs the other.
The GRU and LRU rows have one initialisation each, their cell's own (the GRU's is PyTorch's
U(±1/√H), the LRU's Orvieto et al.'s), run under `"pytorch"`; `--init paper` refuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import scipy.stats

from decaynet import _data as data
from decaynet._initialisation import INITIALISATIONS
from decaynet._model import row_classifier
from decaynet._registry import CLASSIFIER_CELLS, resolve_cell
from decaynet._rows import TABLE2_TRAIN, accuracy_summary, load_rows, train_row
from decaynet.plots import table2_figure
from memdyn import ConfigError, TrainConfig, steps_per_epoch
from memdyn.internal import AtLeast, NonNegative, OneOf, check_fields, config_fingerprint
from memlab import Experiment, SeedSweep

PAPER = {
    ("mnist", "lstm", 32): (95.1, 0.2, 96.1),
    ("mnist", "decay", 32): (95.6, 0.1, 96.4),
    ("mnist", "lstm", 64): (96.2, 0.2, 97.0),
    ("mnist", "decay", 64): (96.5, 0.1, 97.1),
    ("fashion_mnist", "lstm", 64): (82.3, 0.3, 84.1),
    ("fashion_mnist", "decay", 48): (82.2, 0.2, 83.2),
}


def parse_model(spec: str) -> tuple[str, str, int]:
    """`"mnist/lstm/32"` -> `("mnist", "lstm", 32)`; ValueError naming the spec otherwise."""
    parts = spec.split("/")
    if (
        len(parts) != 3
        or parts[0] not in data.DATASETS
        or parts[1] not in CLASSIFIER_CELLS
        or not parts[2].isdigit()
        or int(parts[2]) < 1
    ):
        raise ValueError(f"models entry {spec!r} must look like 'mnist/lstm/32'")
    return parts[0], parts[1], int(parts[2])


@dataclasses.dataclass(frozen=True)
class Config:
    """Table 2 / Fig. 7: row-by-row classifiers, many seeds per row.

    Attributes:
        models: the rows, each `dataset/cell/hidden` with dataset `mnist` or `fashion_mnist`,
            cell `lstm`, `decay`, `gru` or `lru` and the hidden size (an LRU's state size) (e.g.
            `mnist/decay/32`); in pairs on the same dataset, each pair t-tested (default: the
            paper's six rows).
        seeds: networks trained at once (one compiled step, split over the cores) per row (the
            t-tests need two).
        first_seed: PRNG seed of the first network; the row uses seeds first_seed, ...,
            first_seed + seeds − 1 (each sets the initial weights and the batch order).
        train: the optimiser and the schedule, the paper's by default: Adam, lr 0.01, one
            epoch, batch 64; checkpoints in `<out>/checkpoints/` every 100 steps.
        train.optimizer: the optimiser (paper: Adam).
        train.learning_rate: Adam step size (paper: 0.01).
        train.batch_size: images per Adam step (not stated in the paper; 64, PyTorch's MNIST
            example, gives 937 steps per epoch).
        train.epochs: passes over the training set; an epoch's last incomplete batch is dropped
            (paper: 1).
        train.checkpoint_every: steps between checkpoints in `<out>/checkpoints/` (a multiple
            of `chunk_steps`; also at each epoch end); 0 means never. Rerunning with the same
            `--out` resumes from them.
        train_subset: train on the first N training images; 0 means the whole training set
            (60,000).
        test_subset: test on the first N test images; 0 means the whole test set (10,000).
        init: weight initialisation, `pytorch` (U(±1/√H), what `nn.LSTM` gives; closest to
            the paper's numbers) or `paper` (§6.1's U(−1, 1) weights, zero biases); App. C
            does not state one. GRU and LRU rows take their cell's own initialisation (GRU:
            PyTorch's, LRU: its paper's) and need `pytorch`.
        data_dir: folder holding `mnist/` and `fashion_mnist/` with the idx files; empty
            means look in $MEMDYN_DATA, then a `shared/data` beside the repository, then
            download into the cache (~/.cache/memdyn or $MEMDYN_CACHE).
    """

    models: tuple[str, ...] = (
        "mnist/lstm/32",
        "mnist/decay/32",
        "mnist/lstm/64",
        "mnist/decay/64",
        "fashion_mnist/lstm/64",
        "fashion_mnist/decay/48",
    )
    seeds: Annotated[int, AtLeast(2)] = 20
    first_seed: Annotated[int, NonNegative] = 0
    train: TrainConfig = TABLE2_TRAIN
    train_subset: Annotated[int, NonNegative] = 0
    test_subset: Annotated[int, NonNegative] = 0
    init: Annotated[str, OneOf(INITIALISATIONS)] = "pytorch"
    data_dir: str = ""

    def __post_init__(self):
        check_fields(self)
        if len(self.models) % 2:
            raise ConfigError(f"models must come in pairs (t-tested); got {self.models}")
        parsed = [parse_model(spec) for spec in self.models]
        for _, cell, hidden in parsed:  # a cell the init does not apply to: refused before data
            row_classifier(
                resolve_cell(cell, "models", CLASSIFIER_CELLS), hidden, INITIALISATIONS[self.init]
            )
        for first, second in zip(parsed[::2], parsed[1::2], strict=True):
            if first[0] != second[0]:
                raise ConfigError(
                    "models must come in pairs on the same dataset, e.g. 'mnist/lstm/32', "
                    f"'mnist/decay/32'; got {first} followed by {second}"
                )
        if self.train_subset:  # a batch must fit, checked now rather than after loading MNIST
            steps_per_epoch(
                self.train_subset, self.train, examples="training images kept by train_subset"
            )

    def quick(self) -> Config:
        """3 seeds, the first 6,400 training images (100 steps), the first 1,000 test images."""
        return dataclasses.replace(self, seeds=3, train_subset=6400, test_subset=1000)


def run(config: Config, out_dir: Path) -> dict:
    rows, cache = [], {}
    # Everything that shapes a row's training (a --quick run never picks up the full run's files).
    tag = config_fingerprint(config, exclude=("data_dir", "models"))
    seeds = np.arange(config.first_seed, config.first_seed + config.seeds)
    for spec in config.models:
        dataset, cell, hidden = parse_model(spec)
        if dataset not in cache:
            cache = {
                dataset: load_rows(
                    dataset,
                    config.data_dir or None,
                    train_subset=config.train_subset,
                    test_subset=config.test_subset,
                )
            }
        ckpt = Path(out_dir) / "checkpoints" / f"table2_{dataset}_{cell}_{hidden}_{tag}.eqx"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        row = train_row(
            resolve_cell(cell, "models", CLASSIFIER_CELLS),
            hidden,
            cache[dataset],
            config.train,
            seeds=seeds,
            init=INITIALISATIONS[config.init],
            checkpoint=ckpt,
            desc=spec,
        ).record
        paper = PAPER.get((dataset, cell, hidden))
        rows.append({"dataset": dataset, "cell": cell, **row, "paper": paper})
    return {"rows": rows, "tests": pair_tests(rows), "batch_size": config.train.batch_size}


def pair_tests(rows: list[dict]) -> list[dict]:
    """Welch's and Student's two-sample t-tests of each pair of rows' per-seed accuracies."""
    tests = []
    for a, b in zip(rows[::2], rows[1::2], strict=True):
        welch = scipy.stats.ttest_ind(a["accuracies"], b["accuracies"], equal_var=False)
        student = scipy.stats.ttest_ind(a["accuracies"], b["accuracies"], equal_var=True)
        tests.append(
            {
                "dataset": a["dataset"],
                "pair": [f"{a['model']}-{a['hidden']}", f"{b['model']}-{b['hidden']}"],
                "p_value": float(welch.pvalue),
                "welch_t": float(welch.statistic),
                "welch_p": float(welch.pvalue),
                "student_t": float(student.statistic),
                "student_p": float(student.pvalue),
            }
        )
    return tests


# A row's fields that every chunk of a job array has the same, and those joined seed by seed.
SHARED_ROW_FIELDS = ("dataset", "cell", "model", "hidden", "params", "steps", "paper")
PER_SEED_ROW_FIELDS = ("seeds", "accuracies", "final_loss")


class SeedChunks(SeedSweep):
    """Table 2 as a job array: chunks of consecutive seeds, each row's per-seed values joined in
    seed order, its summary and the pairs' t-tests computed again as `run` computes them;
    `seconds` is the sum of the chunks' (the row's compute time, not its wall time)."""

    def merge(self, config: Config, results: Sequence[dict]) -> dict:
        rows = []
        for index, parts in enumerate(zip(*(r["rows"] for r in results), strict=True)):
            first = parts[0]
            for part in parts[1:]:
                for key in SHARED_ROW_FIELDS:
                    if not np.array_equal(part[key], first[key]):
                        raise ConfigError(
                            f"row {index} differs between chunks in {key!r}: "
                            f"{first[key]!r} and {part[key]!r}"
                        )
            joined = {key: np.concatenate([p[key] for p in parts]) for key in PER_SEED_ROW_FIELDS}
            rows.append(
                {
                    "dataset": first["dataset"],
                    "cell": first["cell"],
                    "model": first["model"],
                    "hidden": first["hidden"],
                    "params": first["params"],
                    "seeds": joined["seeds"],
                    "accuracies": joined["accuracies"],
                    **accuracy_summary(joined["accuracies"]),
                    "steps": first["steps"],
                    "final_loss": joined["final_loss"],
                    "seconds": float(sum(p["seconds"] for p in parts)),
                    "paper": first["paper"],
                }
            )
        return {"rows": rows, "tests": pair_tests(rows), "batch_size": config.train.batch_size}


EXPERIMENT = Experiment(
    name="table2",
    help="Table 2 / Fig. 7: LSTM vs DecayNet (or GRU, LRU) on row-by-row MNIST and Fashion-MNIST, "
    "many seeds",
    config=Config,
    run=run,
    plot=table2_figure,
    sweep=SeedChunks(),
)
