"""Figures of the DecayNet experiments: each function takes a result dict and returns a Figure,
drawn in memdyn's one style (`memlab.figure_style`; LSTM dark yellow, DecayNet purple, as in the
paper, via `memlab.model_colour`) and titled with the paper's figure or table (`SOURCES`).

Models are named by the labels their records carry (`"model"`, from the cell's `label`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import scipy.stats
from matplotlib.colors import LogNorm

from memlab import figure_style, key_legend, model_colour, paper_title, stamp_figure, stats_box

PAPER = "DecayNet"
# Experiment name -> the paper's figure or table it reproduces.
SOURCES = {
    "cobweb": f"{PAPER}, Figs. 1, 2 and 5",
    "addition": f"{PAPER}, App. B / Fig. 6",
    "table2": f"{PAPER}, Table 2 / Fig. 7",
    "permuted": f"{PAPER}, §6.1 / Fig. 3 / Table 1",
    "learned": f"{PAPER}, §6.2 / Fig. 4",
    "spectrum": f"{PAPER}, Table 2's training (new: Hessian spectra)",
    "memory": f"{PAPER}, Table 2's training (new: memory kernels)",
}

# Cobweb styles, the paper's: y = x dashed, y = T(x) solid, T_{t-1} dot-dashed, the trajectory
# dotted from a rhombus (x_0) to a circle (x_n).
_COBWEB = {
    "diagonal": {"color": "k", "ls": "--", "lw": 0.8},
    "previous": {"color": "0.5", "ls": "-.", "lw": 1.0},
    "curve": {"color": "k", "ls": "-", "lw": 1.2},
    "path": {"color": model_colour("DecayNet"), "ls": ":", "lw": 1.5},
    "start": {"color": model_colour("DecayNet"), "ls": "none", "marker": "D", "ms": 6},
    "end": {"color": model_colour("DecayNet"), "ls": "none", "marker": "o", "ms": 6},
}
_COBWEB_LEGEND = [
    ("y = x", _COBWEB["diagonal"]),
    ("y = T(x), this step's map", _COBWEB["curve"]),
    ("previous step's map", _COBWEB["previous"]),
    ("cobweb trajectory", _COBWEB["path"]),
    ("start x₀", _COBWEB["start"]),
    ("end xₙ", _COBWEB["end"]),
]


def _cobweb_axes(ax, panel, limits):
    """One cobweb in the paper's style (`_COBWEB`)."""
    x = np.asarray(panel["x"])
    ax.plot(x, x, **_COBWEB["diagonal"])
    if panel.get("previous_curve") is not None:
        ax.plot(x, np.asarray(panel["previous_curve"]), **_COBWEB["previous"])
    ax.plot(x, np.asarray(panel["curve"]), **_COBWEB["curve"])
    path = np.asarray(panel["path"])
    ax.plot(path[:, 0], path[:, 1], **_COBWEB["path"])
    ax.plot(path[0, 0], path[0, 1], **_COBWEB["start"])
    ax.plot(path[-1, 0], path[-1, 1], **_COBWEB["end"])
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_aspect("equal")
    ax.set_title(panel["title"])
    ax.set_xlabel("x")
    ax.set_ylabel("y")


@figure_style()
def cobweb_figure(result: dict):
    """Figs. 1 and 5 in the top row, Fig. 2's three rows of t = 1..3 below, one row title each,
    and one legend for the line styles and markers of every panel."""
    rows = result["figure2"]
    columns = max(len(row["panels"]) for row in rows)
    fig = plt.figure(figsize=(2.6 * max(columns, 4), 2.9 * (len(rows) + 1) + 0.4))
    top, bottom, key = fig.subfigures(3, 1, height_ratios=[1, len(rows), 0.12])
    for part, panels, title in zip(
        top.subfigures(1, 2),
        (result["figure1"], result["figure5"]),
        ("Fig. 1: catch (sink) and release (source) regimes", "Fig. 5: linear sink and source"),
        strict=True,
    ):
        for ax, panel in zip(part.subplots(1, len(panels)), panels, strict=True):
            _cobweb_axes(ax, panel, (-1.2, 1.2))
        part.suptitle(title, fontsize=10)
    bottom.suptitle("Fig. 2: the cell-state map T_t(x) = f_t x + i_t tanh(x), t = 1, 2, 3",
                    fontsize=10)  # fmt: skip
    for row, part in zip(rows, bottom.subfigures(len(rows), 1), strict=True):
        axes = part.subplots(1, columns, squeeze=False)[0]
        for ax, panel in zip(axes, row["panels"], strict=False):
            _cobweb_axes(ax, panel, (-0.2, 1.8))
        part.supylabel(row["label"].replace(": ", ":\n"), fontsize=9)
    key_legend(key, _COBWEB_LEGEND, loc="center", ncols=len(_COBWEB_LEGEND))
    paper_title(fig, SOURCES["cobweb"], "cobweb diagrams of scalar difference equations")
    return fig


def _body_and_key(fig, key_inches: float = 0.35):
    """Split `fig` into a body subfigure and a thin key subfigure below it for a legend (a
    figure-level "outside" legend would be moved onto the footer by `bbox_inches="tight"`)."""
    return fig.subfigures(2, 1, height_ratios=[fig.get_figheight() - key_inches, key_inches])


@figure_style()
def forget_gate_figure(result: dict):
    """Fig. 6: forget-gate dimensions over time, one row per operand pair, one column per cell,
    each column headed by its held-out summary."""
    models = result["models"]
    rows = len(models[0]["examples"])
    fig = plt.figure(figsize=(4.8 * len(models), 2.6 * rows + 1.2))
    body, key = _body_and_key(fig)
    for column, model in zip(body.subfigures(1, len(models)), models, strict=True):
        axes = column.subplots(rows, 1, sharey=True, squeeze=False)[:, 0]
        for ax, example in zip(axes, model["examples"], strict=True):
            forget = np.asarray(example["forget"])
            steps = np.arange(1, forget.shape[0] + 1)
            for dim, trace in zip(result["dims"], forget.T, strict=True):
                ax.plot(steps, trace, marker=".", lw=1.2, label=f"dim {dim}")
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(
                f"{example['a']} + {example['b']} = {example['sum']} "
                f"(net: {example['predicted_sum']}); f_t increases: {example['increases']} "
                f"of {forget.shape[0] - 1}×N",
                fontsize=8,
            )
            ax.set_xlabel("t")
            ax.set_ylabel("forget gate f_t")
        summary = model["increases"]
        accuracy = model["test_digit_accuracy"]
        trained = f"digit accuracy {accuracy:.4f}" if accuracy is not None else "not trained"
        if model.get("stopped_at") is not None:
            trained += f" (non-finite loss by step {model['stopped_at']})"
        column.suptitle(
            f"{model['model']}: {summary['per_sequence_mean']:.1f} of"
            f" {summary['possible_per_sequence']} f_t increases per held-out sequence"
            f"\nmean increase {summary['mean_increase_size']:.2g}, {trained},"
            f" {model['steps']} GD steps",
            fontsize=8.5,
            color=model_colour(model["model"]),
        )
    handles, labels = axes[0].get_legend_handles_labels()
    key.legend(handles, labels, loc="center", ncols=len(labels))
    paper_title(fig, SOURCES["addition"], "forget gates on binary addition")
    return fig


def _dataset_name(dataset: str) -> str:
    return {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}.get(dataset, dataset)


def _welch_p_value(first, second) -> float:
    """Welch's two-sample t-test p-value (unequal variances) of two sets of per-seed numbers."""
    return float(scipy.stats.ttest_ind(first, second, equal_var=False).pvalue)


def _pair_annotation(ax, left: int, right: int, top: float, text: str) -> None:
    """A bracket over the violins at positions `left` and `right` with `text` above it."""
    height = np.diff(ax.get_ylim())[0] * 0.03
    ax.plot([left, left, right, right], [top, top + height, top + height, top], color="0.2", lw=0.8)
    ax.text((left + right) / 2, top + 1.3 * height, text, ha="center", va="bottom", fontsize=7.5)


@figure_style()
def table2_figure(result: dict):
    """Table 2 / Fig. 7: violin and box plots of test accuracy over seeds, one panel per dataset
    (dark yellow LSTM, purple DecayNet), n under each model, the paper's mean ± sd beside each
    violin and Welch's p-value (scipy, from the per-seed accuracies) over each LSTM–DecayNet
    pair."""
    rows = result["rows"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig = plt.figure(figsize=(3.6 * len(datasets) + 0.8, 4.6))
    body, key = _body_and_key(fig)
    axes = body.subplots(1, len(datasets), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        chosen = [r for r in rows if r["dataset"] == dataset]
        values = [np.asarray(r["accuracies"], dtype=float) for r in chosen]
        positions = np.arange(1, len(chosen) + 1)
        parts = ax.violinplot(values, positions=positions, showextrema=False)
        for violin, r in zip(parts["bodies"], chosen, strict=True):
            violin.set_facecolor(model_colour(r["model"]))
            violin.set_edgecolor(model_colour(r["model"]))
            violin.set_alpha(0.45)
        ax.boxplot(values, positions=positions, widths=0.15, showfliers=True,
                   medianprops={"color": "k"}, flierprops={"ms": 3})  # fmt: skip
        for position, r in zip(positions, chosen, strict=True):
            if r.get("paper") is not None:
                mean, sd = r["paper"][0], r["paper"][1]
                ax.errorbar(position + 0.3, mean, yerr=sd, fmt="*", color="k", ms=7, capsize=2)
        labels = [f"{r['model']}-{r['hidden']}\nn = {len(r['accuracies'])}" for r in chosen]
        ax.set_xticks(positions, labels)
        ax.set_xlim(0.4, len(chosen) + 0.7)
        ax.grid(axis="x", visible=False)
        ax.set_title(_dataset_name(dataset))
        ax.set_ylabel("test accuracy (%)")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high + 0.15 * (high - low))
        for left in range(0, len(chosen) - 1, 2):
            pair = values[left], values[left + 1]
            top = max(v.max() for v in pair) + 0.02 * (high - low)
            _pair_annotation(ax, left + 1, left + 2, top,
                             f"Welch p = {_welch_p_value(*pair):.2g}")  # fmt: skip
    key_legend(
        key,
        [(model, {"color": model_colour(model), "lw": 8, "alpha": 0.45})
         for model in dict.fromkeys(r["model"] for r in rows)]
        + [("median, quartiles, 1.5 IQR", {"color": "k", "lw": 1}),
           ("paper's mean ± sd", {"color": "k", "marker": "*", "ls": "none", "ms": 7})],
        loc="center", ncols=4,
    )  # fmt: skip
    paper_title(fig, SOURCES["table2"], "test accuracy over seeds, row-by-row")
    return fig


@figure_style()
def permuted_figure(result: dict):
    """Fig. 3: test accuracy per epoch on permuted MNIST, mean over seeds with the worst-to-best
    band (dark yellow LSTM, purple DecayNet)."""
    fig, ax = plt.subplots(figsize=(6, 4.2))
    epochs = np.asarray(result["epochs"])
    for model in result["models"]:
        curves = np.asarray(model["test_accuracy"], dtype=float)  # (epochs, seeds)
        colour = model_colour(model["model"])
        x = epochs[: len(curves)]
        ax.fill_between(x, curves.min(axis=1), curves.max(axis=1), color=colour, alpha=0.3)
        seeds = curves.shape[1]
        plural = "s" * (seeds != 1)
        label = f"{model['model']}: mean of {seeds} seed{plural} (best {model['best']:.1f} %)"
        ax.plot(x, curves.mean(axis=1), color=colour, lw=2, marker="o" if len(x) < 20 else None,
                label=label)  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    if seeds > 1:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.3, lw=0))
        labels.append("worst to best seed")
    ax.legend(handles, labels)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Permuted MNIST, {result['train_examples']:,} training images")
    paper_title(fig, SOURCES["permuted"])
    return fig


@figure_style()
def learned_figure(result: dict):
    """Fig. 4: (a) MLP loss per update for each optimiser, mean ± sd over optimisees (dark yellow
    LSTM, purple DecayNet); (b) violins and boxes of each optimisee's mean loss per block."""
    optimizers = result["optimizers"]
    updates = np.asarray(result["updates"])
    fig, (ax_curve, ax_block) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, entry in optimizers.items():
        mean, std = np.asarray(entry["mean"], float), np.asarray(entry["std"], float)
        ax_curve.fill_between(updates, mean - std, mean + std, color=model_colour(name), alpha=0.2)
        ax_curve.plot(updates, mean, color=model_colour(name), lw=2, label=f"{name}, mean ± sd")
    ax_curve.set_xlabel("update")
    ax_curve.set_ylabel("cross-entropy loss")
    test = result["late_test"]
    ax_curve.set_title("(a) loss of the optimised MLPs")
    stats_box(ax_curve, f"DecayNet − LSTM, updates {test['updates'][0]}–{test['updates'][1]}: "
              f"{test['decaynet_minus_lstm']:+.3f}\nWelch p = {test['p_value']:.2g}",
              loc="lower left")  # fmt: skip
    ax_curve.legend(loc="upper right")
    names = list(optimizers)
    block_means = {name: np.asarray(optimizers[name]["block_means"], float) for name in names}
    blocks = block_means[names[0]].shape[1]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = block_means[name]
        positions = np.arange(blocks) + (i - (len(names) - 1) / 2) * width
        parts = ax_block.violinplot(list(values.T), positions=positions, widths=width,
                                    showextrema=False)  # fmt: skip
        for body in parts["bodies"]:
            body.set_facecolor(model_colour(name))
            body.set_alpha(0.5)
        ax_block.boxplot(list(values.T), positions=positions, widths=width / 3, showfliers=False,
                         medianprops={"color": "k"})  # fmt: skip
    block = result["block"]
    ax_block.set_xticks(np.arange(blocks), [f"{b * block + 1}–{(b + 1) * block}" for b in
                                             range(blocks)])  # fmt: skip
    ax_block.grid(axis="x", visible=False)
    ax_block.set_xlabel("updates")
    ax_block.set_ylabel("mean loss per block")
    ax_block.set_title(f"(b) per optimisee, n = {block_means[names[0]].shape[0]} each")
    key_legend(ax_block, [(name, {"color": model_colour(name), "lw": 6, "alpha": 0.5})
                          for name in names], loc="upper right")  # fmt: skip
    paper_title(fig, SOURCES["learned"], "LSTM and DecayNet optimisers on MNIST MLPs")
    return fig


def _band(ax, steps, values, label):
    """Mean ± sd over seeds (columns of `values`) against the training step."""
    values = np.asarray(values, dtype=float)
    mean, sd = values.mean(axis=1), values.std(axis=1, ddof=1)
    colour = model_colour(label)
    ax.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.3)
    ax.plot(steps, mean, color=colour, lw=2, marker="o", ms=3, label=label)


@figure_style()
def spectrum_figure(result: dict):
    """Hessian spectra along training (`decaynet spectrum`): top eigenvalue, trace and negative
    mass against the step (mean ± sd over seeds; yellow LSTM, purple DecayNet), and each cell's
    SLQ density over training on a log colour scale (mean over seeds, common grid)."""
    steps = np.asarray(result["steps"])
    cells = result["cells"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    eps = result["negative_threshold"]
    for cell in cells:
        label = cell["model"]
        _band(axes[0, 0], steps, cell["top_eigenvalue"], label)
        _band(axes[0, 1], steps, cell["trace_hutchinson"], label)
        _band(axes[0, 2], steps, cell["negative_mass"], f"{label}")
        mass = np.asarray(cell["negative_mass_relative"], dtype=float)
        axes[0, 2].plot(steps, mass.mean(axis=1), color=model_colour(label), ls="--", lw=1.5,
                        label=f"{label}, below −{eps:g} λ_max")  # fmt: skip
        _band(axes[1, 2], steps, cell["loss"], label)
    titles = ("top eigenvalue λ_max", "trace (Hutchinson)", "negative mass φ((−∞, 0))")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.legend(loc="best")
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
        ax.legend(loc="upper left")
    # Below the two maps, not beside them: a side bar squeezes the third column.
    fig.colorbar(
        mesh,
        ax=axes[1, :2],
        location="bottom",
        shrink=0.5,
        aspect=40,
        label=f"spectral density (Gaussian smoothing σ = {result['sigma']:.3g})",
    )
    axes[1, 2].set_title(f"loss on the {result['analysis_examples']} analysis images")
    axes[1, 2].set_xlabel("training step")
    axes[1, 2].set_yscale("log")
    axes[1, 2].legend(loc="upper right")
    tests = result["tests"]
    lines = [f"{name.replace('_', ' ')}: p = {test['p_value']:.2g}" for name, test in tests.items()]
    stats_box(axes[1, 2], "Welch t-tests, LSTM vs DecayNet\n" + "\n".join(lines),
              loc="lower left")  # fmt: skip
    seeds = len(np.asarray(cells[0]["test_accuracy"]))
    paper_title(fig, SOURCES["spectrum"], f"row-by-row {_dataset_name(result['dataset'])}, "
                f"hidden {result['hidden_size']}, {seeds} seeds per cell")  # fmt: skip
    if result.get("quick"):
        stamp_figure(fig, source=SOURCES["spectrum"], quick=True)
    return fig


def _p_text(test: dict) -> str:
    return "p undefined (constant)" if test["p_value"] is None else f"p = {test['p_value']:.2g}"


@figure_style()
def memory_figure(result: dict):
    """What the trained classifiers remember (`decaynet memory`; yellow LSTM, purple DecayNet):
    (a) the memory magnitude E‖∂y_T/∂x_{T−k}‖_F against the lag on a log scale, every seed thin
    and the mean over seeds bold, the mean horizon at the first ε dashed; (b) the horizons of
    every seed at each ε and the mean lag Σ k m(k) / Σ m(k), with mean ± sd and Welch's p; (c)
    the mean forget gate per step, mean ± sd over seeds."""
    cells, tests = result["cells"], result["tests"]
    epsilons = list(result["epsilons"])
    lags = np.asarray(result["lags"])
    fig, (ax_mag, ax_hor, ax_gate) = plt.subplots(
        1, 3, figsize=(14, 4.4), width_ratios=(1.3, 1.1, 1)
    )
    lines = []
    for cell in cells:
        colour = model_colour(cell["model"])
        magnitude = np.asarray(cell["magnitude"], dtype=float)  # (seeds, lag)
        ax_mag.plot(lags, magnitude.T, color=colour, lw=0.6, alpha=0.35)
        ax_mag.plot(lags, magnitude.mean(axis=0), color=colour, lw=2.2,
                    label=f"{cell['model']}: mean of {magnitude.shape[0]} seeds")  # fmt: skip
        summary = cell["summary"]
        horizon = summary["horizon"][f"{epsilons[0]:g}"]
        ax_mag.axvline(horizon["mean"], color=colour, ls="--", lw=1)
        counts = "/".join(str(n) for n in summary["preferred_counts"].values())
        rate, exponent = summary["exponential_rate"], summary["power_exponent"]
        lines.append(f"{cell['model']}: {counts}; λ = {rate['mean']:.3g} ± {rate['sd']:.2g}, "
                     f"α = {exponent['mean']:.3g} ± {exponent['sd']:.2g}")  # fmt: skip
    types = "/".join(result["decay_types"])
    lines.append(f"Welch: λ {_p_text(tests['exponential_rate'])}, "
                 f"α {_p_text(tests['power_exponent'])}")  # fmt: skip
    stats_box(ax_mag, f"preferred decay ({types}) and fits:\n" + "\n".join(lines),
              loc="lower left")  # fmt: skip
    ax_mag.set_yscale("log")
    ax_mag.set_xlabel("lag k (rows before the last)")
    ax_mag.set_ylabel("E‖∂y_T/∂x_{T−k}‖_F (logits)")
    ax_mag.set_title(f"(a) memory magnitude; dashed: mean horizon at ε = {epsilons[0]:g}")
    ax_mag.legend(loc="upper right")
    rng = np.random.default_rng(0)  # jitter only
    groups = [(f"ε = {eps:g}", lambda c, i=i: np.asarray(c["horizon"], float)[:, i],
               f"horizon_{eps:g}") for i, eps in enumerate(epsilons)]  # fmt: skip
    groups.append(("mean lag", lambda c: np.asarray(c["mean_lag"], float), "mean_lag"))
    ticks, labels = [], []
    for i, (name, values_of, test) in enumerate(groups):
        tops = []
        for j, cell in enumerate(cells):
            colour = model_colour(cell["model"])
            values = values_of(cell)
            x = 3 * i + j
            ax_hor.scatter(x + rng.uniform(-0.2, 0.2, values.size), values, s=12, color=colour,
                           alpha=0.6, lw=0)  # fmt: skip
            ax_hor.errorbar(x + 0.35, values.mean(), yerr=values.std(ddof=1), fmt="o", ms=4,
                            color="k", capsize=2)  # fmt: skip
            tops.append(values.max())
        ticks.append(3 * i + 0.5)  # one tick per group: the colours name the cells, as in (a)
        labels.append(name)
        ax_hor.text(3 * i + 0.5, max(tops) + 0.8, _p_text(tests[test]),
                    ha="center", va="bottom", fontsize=7.5)  # fmt: skip
    # A horizon at the last lag says the window is too short to hold 1 − ε of the mass.
    ax_hor.axhline(lags.max(), color="0.4", ls=":", lw=1)
    ax_hor.text(-0.3, lags.max() - 0.4, "last lag of the window", va="top", fontsize=7)
    ax_hor.set_xticks(ticks, labels)
    ax_hor.grid(axis="x", visible=False)
    ax_hor.set_ylim(-0.5, max(lags.max(), ax_hor.get_ylim()[1]) + 2)
    ax_hor.set_ylabel("lag (rows)")
    ax_hor.set_title("(b) horizons and mean lag per seed (dots), mean ± sd, Welch p", fontsize=9)
    steps = np.arange(1, len(lags) + 1)
    for cell in cells:
        colour = model_colour(cell["model"])
        forget = np.asarray(cell["forget_by_step"], dtype=float)  # (seeds, time)
        mean, sd = forget.mean(axis=0), forget.std(axis=0, ddof=1)
        ax_gate.fill_between(steps, mean - sd, mean + sd, color=colour, alpha=0.3)
        rises = 100 * cell["summary"]["forget_increase"]["mean"]
        label = f"{cell['model']}: f_t rises at {rises:.1f} % of steps"
        ax_gate.plot(steps, mean, color=colour, lw=2, label=label)
    ax_gate.set_ylim(0, 1.02)
    ax_gate.set_xlabel("row t")
    ax_gate.set_ylabel("mean forget gate f_t")
    ax_gate.set_title("(c) forget gate over the analysis images, mean ± sd over seeds")
    ax_gate.legend(loc="lower left")
    accuracy = ", ".join(
        f"{c['model']} {a['mean']:.2f} ± {a['sd']:.2f} %"
        for c, a in ((c, c["summary"]["accuracy"]) for c in cells)
    )
    paper_title(fig, SOURCES["memory"], f"row-by-row {_dataset_name(result['dataset'])}, "
                f"hidden {result['hidden_size']}, {result['analysis_examples']} test images; "
                f"test accuracy {accuracy}")  # fmt: skip
    return fig
