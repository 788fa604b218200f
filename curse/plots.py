"""Figures of the curse-of-memory experiments: each function takes a `run` result dict and
returns a matplotlib Figure (written by `memlab.execute`), drawn in memdyn's one style
(`memlab.figure_style`) and titled with the part of Li et al. (2021) it reproduces (`SOURCES`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm

from memlab import figure_style, key_legend, paper_title, sequence_colours, stats_box

PAPER = "Li et al. 2021"
# Experiment name -> the paper's figure, table or section it reproduces.
SOURCES = {
    "fig1": f"{PAPER}, Fig. 1",
    "fig2": f"{PAPER}, Fig. 2",
    "fig3": f"{PAPER}, Fig. 3",
    "fig4": f"{PAPER}, Fig. 4",
    "approx": f"{PAPER}, §4 / Thm. 4.2 / App. B",
    "landscape": f"{PAPER}, App. D / Prop. D.1",
    "momentum": f"{PAPER}, App. E",
    "spectrum": f"{PAPER}, §5 / Prop. C.3 (Hessian along training)",
    "stability": f"beyond {PAPER}: stable rate parameterisations",
    "memory": f"beyond {PAPER}: §4–5 predictions from estimated kernels",
}


@figure_style()
def plot_fig2(result: dict):
    """Figure 2: loss J(θ(τ)) and parameter distance ‖θ(τ) − θ(0)‖ against τ (log axes), one
    colour per ω (legend shared by both panels)."""
    omegas = np.asarray(result["omegas"])
    taus = np.asarray(result["taus"])
    losses = np.asarray(result["losses"], dtype=float)
    distance = np.asarray(result["parameter_distance"], dtype=float)
    keep = taus > 0
    fig, (ax_loss, ax_dist) = plt.subplots(1, 2, figsize=(10, 4))
    for colour, omega, loss, dist in zip(
        sequence_colours(len(omegas)), omegas, losses, distance, strict=True
    ):
        label = f"ω = {omega:.3g} (1/ω = {1 / omega:.3g})"
        ax_loss.plot(taus[keep], loss[keep], color=colour, label=label)
        ax_dist.plot(taus[keep], dist[keep], color=colour, label=label)
    ax_loss.set(xscale="log", xlabel="training time τ", ylabel="loss J(a, w)")
    ax_loss.set_title(r"Loss on $\rho_\omega = \bar\rho + \rho_0(\cdot - 1/\omega)$ (eq. 125)")
    ax_loss.legend()
    ax_dist.set(xscale="log", yscale="log", xlabel="training time τ", ylabel="‖θ(τ) − θ(0)‖₂")
    ax_dist.set_title("Parameter separation (eq. 22)")
    ax_dist.legend()
    paper_title(fig, SOURCES["fig2"], "gradient flow: longer memory, longer plateau")
    return fig


def _fit_label(name: str, intercept: float, slope: float, r2: float) -> str:
    return f"{name}: log τ = {intercept:.2f} + {slope:.3f}/ω (r² = {r2:.3f})"


@figure_style()
def plot_fig3(result: dict):
    """Figure 3: log plateau time against 1/ω with the least-squares line (and the saddle
    prediction 1/|λ|), the local slopes of log τ against 1/ω next to the predicted ones and the
    asymptotic 2w, and the Hessian spectrum at the start, |λ_min| against 1/ω on a log scale."""
    inverse = np.asarray(result["inverse_omegas"], dtype=float)
    plateau = np.asarray(result["plateau_times"], dtype=float)
    separation = np.asarray(result["separation_times"], dtype=float)
    min_eigs = np.asarray(result["min_hessian_eigs"], dtype=float)
    spectra = np.abs(np.asarray(result["hessian_eigs_start"], dtype=float))
    predicted = result.get("predicted_escape_times")
    # NaN when fewer than two ω escaped; a record read back from JSON holds it as None.
    fit = {
        key: np.nan if result.get(key) is None else float(result[key])
        for key in (
            "intercept",
            "slope",
            "r2",
            "separation_intercept",
            "separation_slope",
            "separation_r2",
            "hessian_slope",
        )
    }
    fig, (ax_time, ax_slope, ax_eig) = plt.subplots(1, 3, figsize=(15, 4.2))
    line = np.linspace(inverse.min(), inverse.max(), 50)
    ax_time.semilogy(inverse, plateau, "o", color="C0", label="plateau time (loss drop)")
    ax_time.semilogy(inverse, separation, "s", color="C1", mfc="none", label="separation time")
    # A flow still on its plateau at its end has an infinite hitting time: its plateau time
    # exceeds the flow's horizon, drawn there as a lower bound.
    for times, colour, fill, label in (
        (plateau, "C0", "C0", "no escape: plateau time > end of flow"),
        (separation, "C1", "none", "no separation by the end of flow"),
    ):
        unreached = ~np.isfinite(times)
        if unreached.any():
            horizons = np.asarray(result["taus"], dtype=float)[:, -1]
            ax_time.semilogy(
                inverse[unreached], horizons[unreached], "^", color=colour, mfc=fill, label=label
            )
    if predicted is not None:
        ax_time.semilogy(inverse, predicted, "--", color="C3", label="saddle theory 1/|λ|")
    fits = [
        (fit["intercept"], fit["slope"], fit["r2"], "C0", "plateau fit"),
        (
            fit["separation_intercept"],
            fit["separation_slope"],
            fit["separation_r2"],
            "C1",
            "separation fit",
        ),
    ]
    for intercept, slope, r2, colour, name in fits:
        if np.isfinite(slope):
            label = _fit_label(name, intercept, slope, r2)
            ax_time.semilogy(line, np.exp(intercept + slope * line), "-", color=colour, label=label)
    ax_time.set(xlabel="memory 1/ω", ylabel="hitting time τ (log scale)")
    ax_time.set_title(r"Plateau time grows like $e^{c/\omega}$ (Theorem 5.1)")
    ax_time.legend(loc="upper left", fontsize=7)
    ax_slope.plot(
        result["local_slope_centres"],
        result["local_slopes"],
        "o-",
        color="C0",
        label="plateau, neighbours",
    )
    ax_slope.plot(
        result["window_slope_centres"],
        result["window_slopes"],
        ".:",
        color="C2",
        label="plateau, sliding window",
    )
    if predicted is not None:
        ax_slope.plot(
            result["local_slope_centres"],
            result["predicted_local_slopes"],
            "--",
            color="C3",
            label="saddle theory 1/|λ|",
        )
        asymptote = result["predicted_asymptotic_slope"]
        ax_slope.axhline(asymptote, color="0.4", lw=0.8, label=f"asymptote 2w = {asymptote:g}")
    if np.isfinite(fit["slope"]):
        ax_slope.axhline(
            fit["slope"], color="C0", lw=0.8, ls="-.", label=f"global fit c1 = {fit['slope']:.3f}"
        )
    ax_slope.set(xlabel="memory 1/ω", ylabel="d log τ / d(1/ω)", title="Local slopes of log τ")
    if np.isfinite(plateau).sum() < 2:
        ax_slope.text(
            0.5,
            0.75,
            "no slope: fewer than two ω escaped their plateau",
            transform=ax_slope.transAxes,
            ha="center",
            va="center",
        )
    ax_slope.legend(loc="lower right", fontsize=7)
    for column in range(spectra.shape[1]):
        ax_eig.semilogy(inverse, spectra[:, column], ".", color="0.7", zorder=1)
    ax_eig.semilogy(inverse, np.abs(min_eigs), "o-", color="C5", label="|λ_min| (λ_min < 0)")
    if predicted is not None:
        ax_eig.semilogy(inverse, 1.0 / predicted, "--", color="C3", label="saddle theory |λ|")
        ax_eig.axhline(result["gauss_newton_gap"], color="0.4", lw=0.8, label="Gauss–Newton gap")
    ax_eig.semilogy([], [], ".", color="0.7", label="|λ| of every eigenvalue")
    title = "Hessian ∇²J at θ(0): a saddle"
    if np.isfinite(fit["hessian_slope"]):
        title += f", log|λ_min| slope {fit['hessian_slope']:.3f}"
    ax_eig.set_title(title, fontsize=9)
    ax_eig.set(xlabel="memory 1/ω", ylabel="|eigenvalue| of ∇²J(θ(0))")
    ax_eig.legend(loc="lower left", fontsize=7)
    paper_title(fig, SOURCES["fig3"], "exponential growth of the plateau time with the memory")
    return fig


def _shade_plateaus(ax, plateaus, colour):
    for start, end, _ in plateaus:
        ax.axvspan(start, end, color=colour, alpha=0.12, lw=0)


@figure_style()
def plot_fig1(result: dict):
    """Figure 1: training loss against GD/Adam step on sampled paths, detected plateaus shaded:
    (a) exponential-sum target, (b) Airy targets for several t0, (c) Lorenz-96 with a tanh RNN."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [
        ("exponential_sum", "(a) exponential sum, linear RNN, GD", None, ""),
        ("airy", "(b) Airy Ai(s0(t − t0)), linear RNN, GD", "t0s", "t0 = {:g}"),
        ("lorenz96", "(c) Lorenz-96 resolved variable, tanh RNN, Adam", "seeds", "seed {:d}"),
    ]
    for ax, (key, title, label_key, label_format) in zip(axes, panels, strict=True):
        panel = result[key]
        steps = np.asarray(panel["steps"], dtype=float)
        losses = np.asarray(panel["losses"], dtype=float)
        colours = sequence_colours(len(losses))
        for index, (colour, curve) in enumerate(zip(colours, losses, strict=True)):
            label = (
                label_format.format(panel[label_key][index])
                if label_key in panel
                else "training loss"
            )
            ax.plot(steps, curve, color=colour, label=label)
            _shade_plateaus(ax, panel["plateaus"][index], colour)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(plt.Rectangle((0, 0), 1, 1, color="0.5", alpha=0.25, lw=0))
        labels.append("detected plateau")
        ax.legend(handles, labels, loc="upper right")
        ax.set(yscale="log", xlabel="training step", ylabel="sampled-path MSE", title=title)
    paper_title(fig, SOURCES["fig1"], "plateaus when training on sampled paths")
    return fig


FIG4_TITLES = {
    "flow": "(i) diagonal linear, gradient flow on J",
    "full_w": "(ii) full W, GD on J",
    "tanh": "(iii) tanh, GD on sampled paths",
    "adam": "(iv) diagonal linear, Adam on J",
    "sampled": "(v) diagonal linear, GD on sampled paths",
}


@figure_style()
def plot_fig4(result: dict):
    """Figure 4: loss against training time τ (η·step for optimisers) for each case and ω, the
    plateau times dotted, and the plateau times against 1/ω for all cases (log scale)."""
    omegas = np.asarray(result["omegas"], dtype=float)
    colours = sequence_colours(len(omegas))
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for ax, (case, title) in zip(axes.flat, FIG4_TITLES.items(), strict=False):
        data = result["cases"][case]
        times = np.asarray(data["times"], dtype=float)
        keep = times > 0
        for colour, omega, curve, tau in zip(
            colours, omegas, data["losses"], data["plateau_times"], strict=True
        ):
            curve = np.asarray(curve, dtype=float)
            ax.plot(times[keep], curve[keep], color=colour, label=f"1/ω = {1 / omega:.3g}")
            if tau is not None and np.isfinite(tau):
                ax.axvline(tau, color=colour, ls=":", lw=1)
        ax.set(xscale="log", xlabel="training time τ", ylabel="loss", title=title)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="k", ls=":", lw=1))
    labels.append("plateau time τ")
    axes.flat[0].legend(handles, labels, loc="lower left")
    ax = axes.flat[5]
    inverse = np.asarray(result["inverse_omegas"], dtype=float)
    for index, case in enumerate(FIG4_TITLES):
        data = result["cases"][case]
        tau = np.asarray([np.nan if t is None else t for t in data["plateau_times"]], dtype=float)
        slope = data["slope"]
        label = f"{case}: slope {slope:.2f}" if slope is not None and np.isfinite(slope) else case
        ax.semilogy(inverse, tau, "o-", color=f"C{index}", label=label)
    ax.set(xlabel="memory 1/ω", ylabel="plateau time τ", title="Plateau time per case")
    ax.legend()
    paper_title(fig, SOURCES["fig4"], "the plateau persists beyond the analysed setting")
    return fig


def _mark_plateau(ax, density: dict):
    start, end, _ = density["plateau"]
    if np.isfinite(start):
        ax.axvspan(start, end, color="tab:cyan", alpha=0.15, lw=0, label="plateau")
    if np.isfinite(density["escape_step"]):
        ax.axvline(density["escape_step"], color="tab:red", ls="--", lw=1.2, label="escape")


def _plot_density_map(fig, ax, density: dict):
    """SLQ density of ∇²J over training (log colour), plateau and escape marked."""
    steps = np.asarray(density["density_steps"], dtype=float)
    grid = np.asarray(density["grid"], dtype=float)
    values = np.asarray(density["densities"], dtype=float)
    floor = values.max() * 1e-8
    mesh = ax.pcolormesh(
        steps,
        grid,
        np.maximum(values, floor).T,
        shading="nearest",
        cmap="magma",
        norm=LogNorm(vmin=floor, vmax=values.max()),
    )
    fig.colorbar(mesh, ax=ax, label="density φ(λ)", pad=0.02)
    ax.plot(steps, density["lambda_max"], "w.", ms=4, label="λ_min, λ_max (extreme Ritz values)")
    ax.plot(steps, density["lambda_min"], "w.", ms=4)
    _mark_plateau(ax, density)
    ax.set(
        xlabel="training step",
        ylabel="eigenvalue λ of ∇²J",
        title=f"SLQ Hessian density, {density['parameters']:,} params (tanh, full W)",
    )
    ax.legend(loc="upper left")


def _plot_density_scalars(ax, density: dict):
    """Loss, λ_max, |λ_min|, the trace and the negative mass of the large model over training."""
    steps = np.asarray(density["density_steps"], dtype=float)
    ax.plot(density["steps"], density["losses"], color="k", lw=1, label="loss")
    ax.plot(steps, density["lambda_max"], "o-", label="λ_max")
    ax.plot(steps, np.abs(density["lambda_min"]), "s-", label="|λ_min|")
    ax.plot(steps, np.abs(density["trace"]), "^-", label="|tr ∇²J| (Hutchinson)")
    ax.plot(
        steps,
        density["negative_mass_above_threshold"],
        "v-",
        label=f"negative mass (λ < −{density['negative_threshold']:g} λ_max)",
    )
    _mark_plateau(ax, density)
    ax.set(
        yscale="log",
        xlabel="training step",
        title=f"1/ω = {1 / density['omega']:.3g}, {density['optimizer']} "
        f"η = {density['learning_rate']:g}",
    )
    ax.legend()


@figure_style()
def plot_spectrum(result: dict):
    """Hessian spectrum along training: loss curves, |eigenvalues| of the exact Hessian against τ
    (all eigenvalues for the longest memory, the smallest |λ| for every ω), Lanczos extremes of
    the 2k-parameter model, and the SLQ spectral density of the ≥ 10⁴-parameter tanh model over
    training (heat map, log colour) with its extremes, trace and negative mass."""
    omegas = np.asarray(result["omegas"], dtype=float)
    taus = np.asarray(result["taus"], dtype=float)
    spectra = np.asarray(result["eigenvalues"], dtype=float)
    colours = sequence_colours(len(omegas))
    fig, grid = plt.subplots(2, 3, figsize=(18, 9))
    axes = grid.ravel()
    keep = taus > 0
    for colour, omega, loss, smallest in zip(
        colours, omegas, result["losses"], result["min_abs_eigenvalue"], strict=True
    ):
        label = f"1/ω = {1 / omega:.3g}"
        axes[0].plot(taus[keep], np.asarray(loss, dtype=float)[keep], color=colour, label=label)
        axes[2].plot(taus[keep], np.asarray(smallest, dtype=float)[keep], color=colour, label=label)
    axes[0].set(xscale="log", xlabel="τ = η·step", ylabel="J(a, w)", title="GD on eq. 125")
    axes[0].legend()
    longest = int(np.argmin(omegas))
    image = np.log10(np.abs(spectra[longest]) + 1e-300).T
    mesh = axes[1].pcolormesh(
        taus, np.arange(image.shape[0]), image, shading="nearest", cmap="magma"
    )
    fig.colorbar(mesh, ax=axes[1], label="log10 |λ|", pad=0.02)
    axes[1].set(
        xscale="symlog",
        xlabel="τ = η·step",
        ylabel="eigenvalue index (ascending λ)",
        title=f"Sorted spectrum of ∇²J, 1/ω = {1 / omegas[longest]:.3g}",
    )
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="τ = η·step",
        ylabel="min |λ(∇²J)|",
        title="Smallest |eigenvalue| along training",
    )
    lanczos = result["lanczos"]
    check = result["lanczos_check"]
    steps = np.asarray(lanczos["steps"], dtype=float)
    axes[3].plot(steps, np.asarray(lanczos["lambda_max"], dtype=float), "o-", label="λ_max")
    axes[3].plot(
        steps, np.abs(np.asarray(lanczos["lambda_min"], dtype=float)), "s-", label="|λ_min|"
    )
    axes[3].set(
        yscale="log",
        xlabel="GD step",
        ylabel="Lanczos extreme eigenvalues",
        title=f"Lanczos, {lanczos['parameters']} parameters "
        f"(check rel. err {check['max_relative_error']:.1e})",
    )
    axes[3].legend()
    _plot_density_map(fig, axes[4], result["density"])
    _plot_density_scalars(axes[5], result["density"])
    paper_title(fig, SOURCES["spectrum"], "the Hessian spectrum through the plateau")
    return fig


@figure_style()
def plot_approx(result: dict):
    """`curse approx`: relative L² error of the best width-m exponential sum against m (log-log and
    semi-log) for polynomial kernels (per ω) and exponentially decaying ones (per β), and the
    minimal width m(ε) against ω."""
    widths = np.asarray(result["widths"], dtype=float)
    omegas = np.asarray(result["omegas"], dtype=float)
    betas = np.asarray(result["betas"], dtype=float)
    poly = np.asarray(result["polynomial_errors"], dtype=float)
    expo = np.asarray(result["exponential_errors"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for scale, ax in zip(("log", "linear"), axes[:2], strict=True):
        for colour, omega, row in zip(sequence_colours(len(omegas)), omegas, poly, strict=True):
            ax.plot(widths, row, "o-", color=colour, label=f"(1+t)^-(1+ω), ω = {omega:g}")
        for colour, beta, row in zip(
            plt.get_cmap("autumn")(np.linspace(0, 0.8, len(betas))), betas, expo, strict=True
        ):
            ax.plot(widths, row, "s--", color=colour, label=f"e^(-βt)(1+t)^-2, β = {beta:g}")
        ax.set(xscale=scale, yscale="log", xlabel="width m", ylabel="relative L² error √J/‖ρ‖")
        ax.set_title("log-log" if scale == "log" else "semi-log")
    axes[0].legend()
    epsilons = np.asarray(result["epsilons"], dtype=float)
    needed = np.asarray(result["polynomial_min_width"], dtype=float)
    for colour, eps, column in zip(
        plt.get_cmap("plasma")(np.linspace(0, 0.85, len(epsilons))), epsilons, needed.T, strict=True
    ):
        axes[2].plot(omegas, column, "o-", color=colour, label=f"ε = {eps:g}")
    axes[2].set(xscale="log", xlabel="ω", ylabel="minimal width m(ε)")
    axes[2].set_title("Curse of memory in approximation (missing: > max width)")
    axes[2].legend()
    paper_title(fig, SOURCES["approx"], "the curse of memory in approximation")
    return fig


@figure_style()
def plot_landscape(result: dict):
    """`curse landscape`: numerically zero Hessian eigenvalues on each k-coincided space against
    the m − k bound, the spectra (|λ|, log scale) per k, and Prop. D.1's eigenvalues along the
    critical line with the sign changes."""
    spaces = result["spaces"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ks = np.array([row["k"] for row in spaces])
    for row in spaces:
        counts = np.asarray(row["zero_eig_counts"])
        values, freq = np.unique(counts, return_counts=True)
        label = "observed (area ∝ frequency)" if row is spaces[0] else None
        axes[0].scatter(
            np.full(values.shape, row["k"]), values, s=20 + 4 * freq, color="C0", label=label
        )
    axes[0].plot(ks, [row["null_dimension_bound"] for row in spaces], "r--", label="bound m − k")
    axes[0].set(xlabel="k", ylabel="zero Hessian eigenvalues", xticks=ks)
    axes[0].set_title(f"Coincided spaces, m = {result['width']} (size ∝ frequency)")
    axes[0].legend()
    for row in spaces:
        spectra = np.abs(np.asarray(row["spectra"], dtype=float)).ravel()
        axes[1].scatter(
            np.full(spectra.shape, row["k"])
            + np.random.default_rng(0).uniform(-0.2, 0.2, spectra.size),
            np.maximum(spectra, 1e-20),
            s=4,
            alpha=0.4,
        )
    axes[1].set(xlabel="k", ylabel="|Hessian eigenvalue|", yscale="log", xticks=ks)
    axes[1].set_title("Spectra at random points of each space")
    s = np.asarray(result["line_s"], dtype=float)
    spectra = np.asarray(result["line_spectra"], dtype=float)
    for j in range(spectra.shape[1]):
        axes[2].plot(s, spectra[:, j], label=f"λ_{j + 1}")
    for index, crossing in enumerate(np.asarray(result["line_crossings"], dtype=float)):
        label = "sign change" if index == 0 else None
        axes[2].axvline(crossing, color="k", ls=":", lw=1, label=label)
    axes[2].set(xlabel="s  (a = (s b*, (1 − s) b*), w = (v*, v*))", ylabel="Hessian eigenvalue")
    axes[2].set_yscale("symlog", linthresh=1e-4)
    axes[2].set_title("Prop. D.1: m = 2 critical line")
    axes[2].legend()
    paper_title(fig, SOURCES["landscape"], "coincided critical affine spaces")
    return fig


@figure_style()
def plot_momentum(result: dict):
    """`curse momentum`: escape time against curvature λ (log-log) for the flows and the Optax
    optimisers with their fitted exponents, and GD vs heavy-ball loss curves on eq. 125."""
    exponents = result["exponents"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    flows = np.asarray(result["flow_curvatures"], dtype=float)
    axes[0].loglog(
        flows,
        result["gradient_flow_times"],
        "o-",
        label=f"gradient flow, p = {exponents['gradient_flow']:.3f}",
    )
    axes[0].loglog(
        flows,
        result["heavy_ball_flow_times"],
        "s-",
        label=f"heavy-ball flow, p = {exponents['heavy_ball_flow']:.3f}",
    )
    axes[0].loglog(flows, result["gradient_flow_exact"], "k:", lw=1, label="log(X/x0)/λ")
    axes[0].loglog(
        flows, result["heavy_ball_flow_exact_no_friction"], "k--", lw=1, label="arccosh(X/x0)/√λ"
    )
    axes[0].set(xlabel="curvature λ", ylabel="escape time T")
    axes[0].set_title("Flows (Diffrax): T ∝ λ^p")
    discrete = np.asarray(result["discrete_curvatures"], dtype=float)
    axes[1].loglog(discrete, result["gd_steps"], "o-", label=f"GD, p = {exponents['gd']:.3f}")
    axes[1].loglog(
        discrete,
        result["heavy_ball_steps"],
        "s-",
        label=f"heavy ball, p = {exponents['heavy_ball']:.3f}",
    )
    axes[1].set(xlabel="curvature λ", ylabel="escape steps")
    axes[1].set_title("Optax optimisers")
    taus = np.asarray(result["plateau_taus"], dtype=float)
    omegas = np.asarray(result["omegas"], dtype=float)
    for colour, omega, gd, hb in zip(
        sequence_colours(len(omegas)),
        omegas,
        np.asarray(result["plateau_gd"]["losses"], dtype=float),
        np.asarray(result["plateau_momentum"]["losses"], dtype=float),
        strict=True,
    ):
        axes[2].plot(taus[1:], gd[1:], "-", color=colour, label=f"1/ω = {1 / omega:.3g}")
        axes[2].plot(taus[1:], hb[1:], "--", color=colour)
    axes[2].set(xscale="log", xlabel="τ = η · steps", ylabel="loss J")
    axes[2].set_title("eq. 125: GD (solid) vs heavy ball (dashed)")
    for ax in axes[:2]:
        ax.legend()
    handles, labels = axes[2].get_legend_handles_labels()
    styles = key_legend(
        axes[2], [("GD", {"ls": "-"}), ("heavy ball", {"ls": "--"})], loc="lower left"
    )
    axes[2].add_artist(styles)
    axes[2].legend(handles, labels, loc="upper right")
    paper_title(fig, SOURCES["momentum"], "momentum shortens escapes from flat regions")
    return fig


@figure_style()
def plot_stability(result: dict):
    """`curse stability`: plateau time against 1/ω and the loss growth under rate perturbations
    of size β, one curve per parameterisation."""
    inverse = 1.0 / np.asarray(result["omegas"], dtype=float)
    betas = np.asarray(result["betas"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    for row in result["table"]:
        name = row["parameterisation"]
        axes[0].semilogy(
            inverse,
            np.asarray(row["plateau_times"], dtype=float),
            "o-",
            label=f"{name} (c1 = {row['plateau_slope']:.2f})",
        )
        axes[1].loglog(betas, np.asarray(row["mean_increase"], dtype=float), "o-", label=name)
        axes[2].semilogx(betas, np.asarray(row["unstable_fraction"], dtype=float), "o-", label=name)
    axes[0].set(xlabel="1/ω", ylabel="plateau time τ")
    axes[0].set_title("Gradient flow on eq. 125 in v, w = f(v)")
    axes[1].set(xlabel="perturbation β of v", ylabel="mean loss increase")
    axes[1].set_title(f"Perturbing the best fit (rel. error {result['fit_relative_error']:.2g})")
    axes[2].set(xlabel="perturbation β of v", ylabel="fraction with some w ≤ 0")
    axes[2].set_title("Unstable models after perturbation")
    for ax in axes:
        ax.legend()
    paper_title(fig, SOURCES["stability"], "plateaus and stability per parameterisation w = f(v)")
    return fig


def _floats(values) -> np.ndarray:
    """A record's list as floats, `None` (a non-finite value in JSON) as NaN."""
    return np.asarray([np.nan if v is None else v for v in values], dtype=float)


@figure_style()
def plot_memory(result: dict):
    """`curse memory`: the eq. 125 kernels, known and estimated; the best-fit error ε(m) of every
    kernel (known solid, estimated dashed); log τ against 1/ω and 1/ω̂ with the fit; the
    Lorenz-96 and delay estimates with their bootstrap bands; the horizon of the model's kernel
    along each flow with its plateau time; how many predictions agree."""
    memory, lorenz, delay = result["memory"], result["lorenz96"], result["delay"]
    widths = np.asarray(result["widths"], dtype=float)
    inverse = np.asarray(memory["inverse_omegas"], dtype=float)
    colours = sequence_colours(len(inverse))
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    ax = axes[0, 0]
    dt = memory["dt"]
    for colour, inv, kernel, centre in zip(
        colours, inverse, memory["kernels"], memory["bump_centre_estimated"], strict=True
    ):
        lags = dt * (np.arange(len(kernel["kernel"])) + 0.5)
        ax.plot(lags, np.asarray(kernel["exact_kernel"]) / dt, color=colour, lw=2, alpha=0.5)
        ax.plot(
            lags,
            np.asarray(kernel["kernel"]) / dt,
            color=colour,
            lw=0.8,
            label=f"1/ω = {inv:.3g}, 1/ω̂ = {centre:.3g}",
        )
    ax.set(xlabel="t", ylabel="ρ(t)", title="eq. 125: ρ_ω (thick) and ρ̂ from noisy paths")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    for colour, inv, known, estimated in zip(
        colours, inverse, memory["known_errors"], memory["estimated_errors"], strict=True
    ):
        ax.plot(widths, _floats(known), "o-", color=colour, label=f"eq. 125, 1/ω = {inv:.3g}")
        ax.plot(widths, _floats(estimated), "x--", color=colour)
    ax.plot(
        widths, _floats(delay["exact_errors"]), "o-", color="k", label=f"delay d = {delay['delay']}"
    )
    ax.plot(widths, _floats(delay["estimated_errors"]), "x--", color="k")
    ax.plot(widths, _floats(lorenz["errors"]), "x--", color="C3", label="Lorenz-96 (ρ̂ only)")
    for epsilon in result["epsilons"]:
        ax.axhline(epsilon, color="0.7", lw=0.8, ls=":")
    ax.set(
        xlabel="width m",
        ylabel="relative L² error ε(m)",
        yscale="log",
        title="Best exponential-sum fits: known (o) and estimated (x)",
    )
    ax.legend(fontsize=7)
    ax = axes[0, 2]
    tau = _floats(memory["plateau_times"])
    centres = _floats(memory["bump_centre_estimated"])
    ax.plot(inverse, np.log(tau), "o", color="C0", label="measured vs 1/ω")
    ax.errorbar(
        centres,
        np.log(tau),
        xerr=_floats(memory["bump_centre_tolerance"]),
        fmt="x",
        color="C1",
        label="measured vs 1/ω̂ (± tolerance)",
    )
    for name, colour, x in (
        ("fit_on_inverse_omega", "C0", inverse),
        ("fit_on_bump_centre", "C1", centres),
    ):
        fit = memory[name]
        if fit["slope"] is not None and np.isfinite(fit["slope"]):
            grid = np.linspace(np.nanmin(x), np.nanmax(x), 20)
            ax.plot(
                grid,
                fit["intercept"] + fit["slope"] * grid,
                color=colour,
                lw=0.8,
                label=f"c1 = {fit['slope']:.3f}, r² = {fit['r2']:.3f}",
            )
    ax.set(
        xlabel="memory 1/ω (or 1/ω̂)",
        ylabel="log plateau time τ",
        title="Thm 5.1: log τ linear in the memory",
    )
    ax.legend(fontsize=7)
    for ax, record, title in (
        (axes[1, 0], lorenz, "Lorenz-96: ρ̂ of x_1 − mean trajectory"),
        (axes[1, 1], delay, f"delay d = {delay['delay']}: ρ̂"),
    ):
        kernel = np.asarray(record["kernel"], dtype=float)
        error = np.asarray(record["standard_error"], dtype=float)
        lags = np.arange(kernel.size)
        ax.plot(lags, kernel, "o-", ms=3, color="C0")
        ax.fill_between(lags, kernel - 2 * error, kernel + 2 * error, color="C0", alpha=0.2)
        ax.axvline(record["horizon"], color="C3", ls=":", label=f"horizon {record['horizon']}")
        ax.set(
            xlabel="lag k",
            ylabel="ρ̂_k",
            title=f"{title} (R² {record['explained_variance']:.3f}, {record['decay_type']})",
        )
        ax.legend(fontsize=7)
    ax = axes[1, 2]
    taus = np.asarray(memory["taus"], dtype=float)
    along = np.asarray(memory["horizons_along"], dtype=float)
    for colour, inv, row, plateau in zip(colours, inverse, along, tau, strict=True):
        ax.semilogx(taus[1:], row[1:], color=colour, label=f"1/ω = {inv:.3g}")
        if np.isfinite(plateau):
            ax.axvline(plateau, color=colour, ls="--", lw=0.8)
    ax.set(
        xlabel="flow time τ",
        ylabel="horizon of the model's kernel",
        title="Memory along training; dashed: plateau time τ",
    )
    ax.legend(fontsize=7, loc="upper left")
    lines = [f"{result['agreements']} of {result['rows']} predictions agree"]
    lines += [
        f"✗ {row['task']}: {row['quantity'].split(':')[0]}: "
        f"{row['predicted']:.3g} vs {row['measured']:.3g}"
        for row in result["table"]
        if not row["agrees"]
    ][:6]
    stats_box(ax, "\n".join(lines), loc="lower right")
    paper_title(fig, SOURCES["memory"], "prediction beside measurement")
    return fig
