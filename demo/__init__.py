"""`make demo`: each paper's headline as the paper reports it, in about two minutes on 2 CPU cores.

- Li et al. 2021, Fig. 3: the gradient-flow plateau time grows exponentially with the memory 1/ω
  (`fig3_config`: 1/ω = 4, 6, ..., 16, τ up to 10³).
- DecayNet, Table 2 / Fig. 7: LSTM versus DecayNet on row-by-row MNIST (32 hidden units) and
  Fashion-MNIST (LSTM-64, DecayNet-48) on the full training and test sets (`table2_config`: 3
  seeds instead of 20, batch 200, so one epoch is 300 Adam steps instead of 937).
- DecayNet, Figs. 1, 2 and 5: the cobweb diagrams (the full figure; it takes seconds).

Each writes `results/<name>/<name>.{json,png}` through `memlab.execute`; the demo ends with a
table of our numbers against the papers'. The configurations are the experiments' own config
dataclasses with a few fields replaced, so `decaynet table2` and `curse fig3` run them too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import jax

from curse.experiments import fig3
from decaynet.experiments import cobweb, table2
from memlab import execute

TABLE2_MODELS = (
    "mnist/lstm/32",
    "mnist/decay/32",
    "fashion_mnist/lstm/64",
    "fashion_mnist/decay/48",
)


def table2_config(*, seeds: int = 3, test_subset: int = 0) -> table2.Config:
    """The demo's Table 2: the paper's models on MNIST (32 hidden) and Fashion-MNIST (LSTM-64,
    DecayNet-48), one epoch of the full training set at batch 200 (300 Adam steps, lr 0.01),
    `seeds` seeds per model, tested on the full test set (`test_subset` = 0) or its first
    `test_subset` images. No checkpoints: it runs in seconds per model."""
    config = table2.Config()
    return dataclasses.replace(
        config,
        models=TABLE2_MODELS,
        seeds=seeds,
        train=dataclasses.replace(config.train, batch_size=200, checkpoint_every=0),
        test_subset=test_subset,
    )


def fig3_config() -> fig3.Fig3Config:
    """The demo's Fig. 3: 1/ω = 4, 6, ..., 16 (plateau times from 0.07 to ~10²), τ up to 10³."""
    return dataclasses.replace(
        fig3.Fig3Config(),
        omegas=tuple(1.0 / k for k in range(4, 17, 2)),
        long_omegas=(),  # the single long solves to 1/ω = 32 take minutes
        tau_max=1e3,
        num_saves=61,
        max_steps=20_000,
    )


# (label, experiment, configuration) in the order the demo runs them.
DEMOS = (
    ("Li et al. 2021, Fig. 3", fig3.EXPERIMENT, fig3_config),
    ("DecayNet, Table 2 / Fig. 7", table2.EXPERIMENT, table2_config),
    ("DecayNet, Figs. 1, 2, 5", cobweb.EXPERIMENT, cobweb.Config),
)


_DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


def summary_table(results: dict[str, dict]) -> str:
    """Our headline numbers against the papers' (Fig. 3's fit; Table 2's mean ± sd per row and
    Welch's p per pair), one line each."""
    width = 57
    lines = [f"{'result':<{width}} {'ours':>22}   {'paper':>12}"]
    if "fig3" in results:
        r = results["fig3"]
        ours = f"c1 = {r['slope']:.2f}, r² = {r['r2']:.3f}"
        lines.append(f"{'Fig. 3: fit log τ = c0 + c1/ω':<{width}} {ours:>22}   {'c1 > 0':>12}")
    table2 = results.get("table2", {})
    for row in table2.get("rows", []):
        name = f"Table 2: {_DATASETS[row['dataset']]} {row['model']}-{row['hidden']} (%)"
        paper = "" if row["paper"] is None else f"{row['paper'][0]:.1f} ± {row['paper'][1]:.1f}"
        ours = f"{row['mean']:.1f} ± {row['std']:.1f} (n = {len(row['accuracies'])})"
        lines.append(f"{name:<{width}} {ours:>22}   {paper:>12}")
    for test in table2.get("tests", []):
        name = f"Table 2: Welch p, {' vs '.join(test['pair'])} ({_DATASETS[test['dataset']]})"
        lines.append(f"{name:<{width}} {test['p_value']:>22.2g}")
    return "\n".join(lines)


def main(out_root: str = "results") -> int:
    """Run the demos into `out_root/<name>/`, then print the files and the summary table."""
    start = time.perf_counter()
    written, results = [], {}
    for label, experiment, make_config in DEMOS:
        print(f"demo: {label} ({experiment.name}) ...", flush=True)
        began = time.perf_counter()
        paths = execute(experiment, make_config(), Path(out_root) / experiment.name)
        print(f"demo: {experiment.name} took {time.perf_counter() - began:.0f} s", flush=True)
        results[experiment.name] = json.loads(paths["json"].read_text())["result"]
        written.extend(paths.values())
    print("\ndemo: figures and numbers written to")
    for path in written:
        print(f"  {path}")
    seconds, cpus = time.perf_counter() - start, os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    backend = jax.default_backend()  # not `environment()`: git, versions and canaries
    print(f"\ndemo: {seconds:.0f} s in all on {backend}, {cpus} cores, load average {load:.1f}")
    print("\n" + summary_table(results))
    return 0
