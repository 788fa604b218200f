"""Figures of the DecayNet experiments: each function takes a result dict and returns a Figure.

Models are named by the labels their records carry (`"model"`, from the cell's `label`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

# The paper's colours (yellow LSTM, purple DecayNet) and the baselines'; other labels get OTHER.
COLOURS = {"LSTM": "gold", "DecayNet": "tab:purple", "SGD": "tab:gray", "Adam": "tab:blue",
           "RMSProp": "tab:green"}  # fmt: skip
OTHER = "tab:red"


def _colour(label: str) -> str:
    return COLOURS.get(label, OTHER)


def _cobweb_axes(ax, panel, limits):
    """One cobweb in the paper's style: y = x dashed, y = T(x) solid, T_{t-1} dot-dash,
    the trajectory dotted from a rhombus (x_0) to a circle (x_n)."""
    x = np.asarray(panel["x"])
    ax.plot(x, x, "k--", lw=0.8, label="y = x")
    if panel.get("previous_curve") is not None:
        ax.plot(x, np.asarray(panel["previous_curve"]), "-.", color="0.5", lw=1.0, label="T_{t-1}")
    ax.plot(x, np.asarray(panel["curve"]), "k-", lw=1.2, label="y = T(x)")
    path = np.asarray(panel["path"])
    ax.plot(path[:, 0], path[:, 1], ":", color="tab:purple", lw=1.5)
    ax.plot(path[0, 0], path[0, 1], "D", color="tab:purple", ms=6)
    ax.plot(path[-1, 0], path[-1, 1], "o", color="tab:purple", ms=6)
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_aspect("equal")
    ax.set_title(panel["title"], fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def cobweb_figure(result: dict):
    """Figs. 1 and 5 in the top row, Fig. 2's three rows of t = 1..3 below."""
    rows = result["figure2"]
    columns = max(len(row["panels"]) for row in rows)
    fig = plt.figure(figsize=(3.0 * max(columns, 4), 3.2 * (len(rows) + 1)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1, len(rows)])
    top_axes = top.subplots(1, 4)
    for ax, panel in zip(top_axes[:2], result["figure1"], strict=True):
        _cobweb_axes(ax, panel, (-1.2, 1.2))
    for ax, panel in zip(top_axes[2:], result["figure5"], strict=True):
        _cobweb_axes(ax, panel, (-1.2, 1.2))
    top.suptitle("Fig. 1 (catch / release regimes)            Fig. 5 (sink / source)", fontsize=11)
    axes = bottom.subplots(len(rows), columns, squeeze=False)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row["panels"]):
            _cobweb_axes(axes[r, c], panel, (-0.2, 1.8))
        axes[r, 0].set_ylabel(f"{row['label']}\ny", fontsize=9)
    bottom.suptitle("Fig. 2: cell-state map T_t(x) = f_t x + i_t tanh(x)", fontsize=11)
    return fig


def forget_gate_figure(result: dict):
    """Fig. 6: forget-gate dimensions over time, one row per operand pair, one column per cell."""
    models = result["models"]
    rows = len(models[0]["examples"])
    fig, axes = plt.subplots(
        rows, len(models), figsize=(4.5 * len(models), 2.6 * rows), squeeze=False, sharey=True,
        layout="constrained",
    )  # fmt: skip
    for c, model in enumerate(models):
        for r, example in enumerate(model["examples"]):
            ax = axes[r, c]
            forget = np.asarray(example["forget"])
            steps = np.arange(1, forget.shape[0] + 1)
            for j, dim in enumerate(result["dims"]):
                ax.plot(steps, forget[:, j], marker=".", lw=1.2, label=f"dim {dim}")
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(
                f"{model['model']}: {example['a']} + {example['b']}"
                f" = {example['sum']} (net: {example['predicted_sum']})\n"
                f"increases (all {forget.shape[0] - 1}×N): {example['increases']}",
                fontsize=8,
            )
            ax.set_xlabel("t")
            if c == 0:
                ax.set_ylabel("f_t")
        summary = model["increases"]
        axes[0, c].annotate(
            f"held-out mean increases/sequence {summary['per_sequence_mean']:.1f}"
            f" of {summary['possible_per_sequence']}"
            f" (mean size {summary['mean_increase_size']:.2g})"
            f"\nheld-out digit accuracy {model['test_digit_accuracy']:.4f}"
            f" after {model['steps']} GD steps",
            xy=(0.5, 1.3), xycoords="axes fraction", ha="center", fontsize=8, color="tab:red",
        )  # fmt: skip
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    return fig


def table2_figure(result: dict):
    """Fig. 7: violin and box plots of test accuracy over seeds, one panel per dataset
    (yellow LSTM, purple DecayNet, as in the paper)."""
    rows = result["rows"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        chosen = [r for r in rows if r["dataset"] == dataset]
        values = [np.asarray(r["accuracies"], dtype=float) for r in chosen]
        positions = np.arange(1, len(chosen) + 1)
        parts = ax.violinplot(values, positions=positions, showextrema=False)
        for body, r in zip(parts["bodies"], chosen, strict=True):
            body.set_facecolor(_colour(r["model"]))
            body.set_alpha(0.4)
        ax.boxplot(values, positions=positions, widths=0.15, showfliers=True)
        ax.set_xticks(positions, [f"{r['model']}-{r['hidden']}" for r in chosen], fontsize=8)
        ax.set_title(dataset.replace("_", "-"))
        ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    return fig


def permuted_figure(result: dict):
    """Fig. 3: test accuracy per epoch on permuted MNIST, mean over seeds with the worst-to-best
    band (yellow LSTM, purple DecayNet)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.asarray(result["epochs"])
    for model in result["models"]:
        curves = np.asarray(model["test_accuracy"], dtype=float)  # (epochs, seeds)
        colour = _colour(model["model"])
        x = epochs[: len(curves)]
        ax.fill_between(x, curves.min(axis=1), curves.max(axis=1), color=colour, alpha=0.3)
        label = f"{model['model']} (best {model['best']:.1f} %)"
        ax.plot(x, curves.mean(axis=1), color=colour, lw=2, marker="o" if len(x) < 20 else None,
                label=label)  # fmt: skip
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"permuted MNIST ({result['train_examples']:,} training images)")
    ax.legend()
    fig.tight_layout()
    return fig


def learned_figure(result: dict):
    """Fig. 4: (a) MLP loss per update for each optimiser, mean ± sd over optimisees (yellow
    LSTM, purple DecayNet); (b) violins and boxes of each optimisee's mean loss per block."""
    optimizers = result["optimizers"]
    updates = np.asarray(result["updates"])
    fig, (ax_curve, ax_block) = plt.subplots(1, 2, figsize=(11, 4))
    for name, entry in optimizers.items():
        mean, std = np.asarray(entry["mean"], float), np.asarray(entry["std"], float)
        ax_curve.fill_between(updates, mean - std, mean + std, color=_colour(name), alpha=0.2)
        ax_curve.plot(updates, mean, color=_colour(name), lw=2, label=name)
    ax_curve.set_xlabel("update")
    ax_curve.set_ylabel("cross-entropy loss")
    test = result["late_test"]
    ax_curve.set_title(f"DecayNet − LSTM, updates {test['updates'][0]}–{test['updates'][1]}: "
                       f"{test['decaynet_minus_lstm']:+.3f} (p = {test['p_value']:.2g})",
                       fontsize=9)  # fmt: skip
    ax_curve.legend()
    names = list(optimizers)
    blocks = len(np.asarray(optimizers[names[0]]["block_means"])[0])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = np.asarray(optimizers[name]["block_means"], float)
        positions = np.arange(blocks) + (i - (len(names) - 1) / 2) * width
        parts = ax_block.violinplot(list(values.T), positions=positions, widths=width,
                                    showextrema=False)  # fmt: skip
        for body in parts["bodies"]:
            body.set_facecolor(_colour(name))
            body.set_alpha(0.5)
        ax_block.boxplot(list(values.T), positions=positions, widths=width / 3, showfliers=False)
    block = result["block"]
    ax_block.set_xticks(np.arange(blocks), [f"{b * block + 1}–{(b + 1) * block}" for b in
                                             range(blocks)])  # fmt: skip
    ax_block.set_xlabel("updates")
    ax_block.set_ylabel("mean loss per block")
    fig.tight_layout()
    return fig


def _band(ax, steps, values, label):
    """Mean ± sd over seeds (columns of `values`) against the training step."""
    values = np.asarray(values, dtype=float)
    mean, sd = values.mean(axis=1), values.std(axis=1, ddof=1)
    colour = _colour(label)
    ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.3)
    ax.plot(steps, mean, color=colour, lw=2, marker="o", ms=3, label=label)


def spectrum_figure(result: dict):
    """Hessian spectra along training (`decaynet spectrum`): top eigenvalue, trace and negative
    mass against the step (mean ± sd over seeds; yellow LSTM, purple DecayNet), and each cell's
    SLQ density over training on a log colour scale (mean over seeds, common grid)."""
    from matplotlib.colors import LogNorm

    steps = np.asarray(result["steps"])
    cells = result["cells"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), layout="constrained")
    eps = result["negative_threshold"]
    for cell in cells:
        label = cell["model"]
        _band(axes[0, 0], steps, cell["top_eigenvalue"], label)
        _band(axes[0, 1], steps, cell["trace_hutchinson"], label)
        _band(axes[0, 2], steps, cell["negative_mass"], f"{label}")
        mass = np.asarray(cell["negative_mass_relative"], dtype=float)
        axes[0, 2].plot(steps, mass.mean(axis=1), color=_colour(label), ls="--", lw=1.5,
                        label=f"{label}, below −{eps:g} λ_max")  # fmt: skip
        _band(axes[1, 2], steps, cell["loss"], label)
    titles = ("top eigenvalue λ_max", "trace (Hutchinson)", "negative mass φ((−∞, 0))")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    axes[0, 0].set_yscale("log")
    grid = np.asarray(result["grid"], dtype=float)
    densities = [np.asarray(c["density"], dtype=float).mean(axis=1) for c in cells]
    top = max(d.max() for d in densities)
    norm = LogNorm(vmin=top * 1e-6, vmax=top)
    for ax, cell, density in zip(axes[1, :2], cells, densities, strict=True):
        mesh = ax.pcolormesh(np.arange(len(steps)), grid, np.maximum(density, norm.vmin).T,
                             norm=norm, cmap="magma", shading="nearest")  # fmt: skip
        lam = np.asarray(cell["top_eigenvalue"], dtype=float).mean(axis=1)
        ax.plot(np.arange(len(steps)), lam, "w--", lw=1, label="mean λ_max")
        ax.set_xticks(np.arange(len(steps)), [str(s) for s in steps], fontsize=7, rotation=45)
        accuracy = np.asarray(cell["test_accuracy"], dtype=float)
        ax.set_title(f"{cell['model']}: density over training "
                     f"(test {accuracy.mean():.2f} ± {accuracy.std(ddof=1):.2f} %)")  # fmt: skip
        ax.set_xlabel("training step (analysis point)")
        ax.set_ylabel("eigenvalue")
        ax.legend(fontsize=8, loc="upper left")
    fig.colorbar(mesh, ax=axes[1, :2], label=f"density (σ = {result['sigma']:.3g})")
    axes[1, 2].set_title(f"loss on the {result['analysis_examples']} analysis images")
    axes[1, 2].set_xlabel("training step")
    axes[1, 2].set_yscale("log")
    axes[1, 2].legend(fontsize=8)
    tests = result["tests"]
    lines = [f"{name.replace('_', ' ')}: p = {test['p_value']:.2g}" for name, test in tests.items()]
    axes[1, 2].text(0.98, 0.98, "Welch t-tests\n" + "\n".join(lines), ha="right", va="top",
                    transform=axes[1, 2].transAxes, fontsize=7)  # fmt: skip
    seeds = len(np.asarray(cells[0]["test_accuracy"]))
    title = (f"Hessian spectra along row-by-row {result['dataset'].replace('_', '-')} training, "
             f"hidden {result['hidden_size']}, {seeds} seeds per cell")  # fmt: skip
    if result.get("quick"):
        title += " — QUICK MODE (smoke test, not the full run)"
    fig.suptitle(title, color="tab:red" if result.get("quick") else "black")
    return fig
