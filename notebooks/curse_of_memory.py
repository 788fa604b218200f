# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # On the Curse of Memory in RNNs
#
# A walk through Li, Han, E & Li (ICLR 2021) with the `curse` package: why a linear recurrent
# network learns long memories slowly, and why it needs many neurons to represent them.
#
# **The model.** A continuous-time linear RNN, $\dot h = W h + U x(t)$, $\hat y(t) = c^\top h(t)$
# with a stable $W$, computes $\hat y(t) = \int_0^\infty \hat\rho(s)\, x(t - s)\, ds$ with the
# kernel $\hat\rho(s) = c^\top e^{W s} U$. A linear, causal, time-homogeneous target functional
# has the same form with its own kernel $\rho$, so learning the functional is learning $\rho$ by a
# sum of exponentials. With diagonal $W = -\mathrm{diag}(w)$ and $a = c \odot u$,
# $\hat\rho(t) = \sum_i a_i e^{-w_i t}$.
#
# **The loss.** With white-noise input the expected squared error is the $L^2$ distance between
# the kernels, in closed form through the Laplace transform $\mathcal{L}[\rho]$ (eq. 18/77):
#
# $$J(a, w) = \sum_{ij} \frac{a_i a_j}{w_i + w_j}
#   - 2 \sum_i a_i\, \mathcal{L}[\rho](w_i) + \|\rho\|^2 .$$
#
# Set `MEMDYN_NOTEBOOK_FULL=1` to run the paper-sized experiments instead of the small ones.

# %%
# %matplotlib inline
import dataclasses
import os

import jax

jax.config.update("jax_enable_x64", True)  # plateau gradients and curvatures are tiny

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.integrate

import curse
import memdyn
from curse.experiments import approx, fig3
from curse.plots import plot_approx, plot_fig3

SMALL = os.environ.get("MEMDYN_NOTEBOOK_FULL") is None
print("small mode" if SMALL else "full (paper-sized) mode")

# %% [markdown]
# ## A target with memory (eq. 125)
#
# $\rho_\omega(t) = \bar\rho(t) + \rho_0(t - 1/\omega)$: a short-memory part
# $\bar\rho(t) = e^{-t} + 0.5\, e^{-2t}$ that a width-2 model represents exactly, plus a unit
# Gaussian bump centred at $t = 1/\omega$. Small $\omega$ means the output depends on inputs from
# long ago. The plot shows $\rho_\omega$ for a few $\omega$: the same short-memory head, with the
# bump further to the right as $\omega$ shrinks.

# %%
t = np.linspace(0.0, 30.0, 601)
fig, ax = plt.subplots(figsize=(7, 3))
for inverse_omega in (4, 8, 16, 24):
    target = curse.memory_target(1.0 / inverse_omega)
    ax.plot(t, np.asarray(target.kernel(jnp.asarray(t))), label=f"1/ω = {inverse_omega}")
ax.set(xlabel="t", ylabel="ρ_ω(t)", title="Memory targets of eq. 125")
ax.legend()
plt.show()

# %% [markdown]
# ## The closed-form loss
#
# `white_noise_loss` evaluates eq. 18/77. As an independent check we integrate
# $(\hat\rho - \rho)^2$ on a fine grid with Simpson's rule; the two numbers printed below should
# agree to many digits.

# %%
target = curse.memory_target(1 / 8)
a, w = jnp.array([0.5, 0.5, 0.1]), jnp.array([1.0, 2.0, 0.5])
closed_form = float(curse.white_noise_loss(a, w, target))
grid = np.linspace(0.0, 60.0, 120_001)
model_kernel = np.exp(-np.outer(grid, np.asarray(w))) @ np.asarray(a)
residual = model_kernel - np.asarray(target.kernel(jnp.asarray(grid)))
quadrature = scipy.integrate.simpson(residual**2, x=grid)
print(f"J closed form = {closed_form:.10f}")
print(f"J quadrature  = {quadrature:.10f}")

# %% [markdown]
# ## Why training stalls: an exponentially small gradient
#
# The experiment starts the gradient flow $d\theta/d\tau = -\nabla J(\theta)$ (eq. 21) at the exact
# fit of the short-memory part, $(a, w) = (\bar a, \bar w)$, plus one spare unit with $a = 0$ at
# rate $w = 0.5$. The loss there is the bump's energy, of order one, but the only force pulling
# the model towards the bump is $\partial J / \partial a_{\text{spare}} = -2\,
# \mathcal{L}[\rho_0(\cdot - 1/\omega)](0.5)$, which decays like $e^{-0.5/\omega}$: the bump lives
# at times where $e^{-w t}$ is tiny. The analytic gradient (eq. 19) shows it directly; the fitted
# slope of $\log|\partial J/\partial a|$ against $1/\omega$ is printed for comparison with the
# spare rate 0.5.

# %%
theta0 = fig3.Fig3Config().start()
inverse_omegas = np.array([4, 8, 12, 16, 20, 24], dtype=float)
spare_force = []
for inverse_omega in inverse_omegas:
    grad_a, _ = curse.white_noise_grad(*theta0, curse.memory_target(1.0 / inverse_omega))
    spare_force.append(abs(float(grad_a[-1])))
    print(f"1/ω = {inverse_omega:4.0f}:  |∂J/∂a_spare| = {spare_force[-1]:.3e}")
force_slope = -np.polyfit(inverse_omegas, np.log(spare_force), 1)[0]
print(f"decay rate of the escape force per unit of 1/ω: {force_slope:.3f}")

# %% [markdown]
# ## The plateau: Figure 3
#
# `curse.experiments.fig3.run` integrates the gradient flow for every $\omega$ at once (one
# `vmap`-ed, compiled Diffrax solve), measures the plateau time $\tau$ (the first time the loss
# has dropped by 0.05) and the parameter-separation time (eq. 22), fits
# $\log \tau = c_0 + c_1/\omega$, and computes the exact Hessian of $J$ at the start. Theorem 5.1
# predicts $\tau \gtrsim e^{c/\omega}$, i.e. $c_1 > 0$, a lower bound with no value for $c$.
# With the spare unit at rate 0.5 the force estimate above suggests $c_1$ near 0.5 on short
# memories; on long ones the escape is set by the saddle's smallest Hessian eigenvalue, whose
# closed form gives a local slope rising towards $2w = 1$ (`curse.experiments.fig3`'s docstring).
# The small mode uses the package's `quick()` grid (1/ω = 4…12, τ up to 10³); the full mode uses
# 1/ω = 4…28 to τ = 10⁶ and 1/ω = 30, 32 each solved alone.

# %%
config = fig3.Fig3Config()
if SMALL:
    config = config.quick()
result = fig3.run(config)
for inverse_omega, tau, finished in zip(
    result["inverse_omegas"], result["plateau_times"], result["solve_finished"], strict=True
):
    print(f"1/ω = {inverse_omega:5.1f}:  plateau time τ = {tau:.4g}  (solve finished: {finished})")
print(
    f"plateau-time slope c1 = {result['slope']:.4f}, intercept c0 = {result['intercept']:.3f}, "
    f"r² = {result['r2']:.4f}"
)
print(
    f"separation-time slope = {result['separation_slope']:.4f} (r² = {result['separation_r2']:.4f})"
)

# %% [markdown]
# The loss curves themselves (Figure 2's view of the same flows): each curve sits near its initial
# value, then drops once the spare unit has found the bump. The drop comes later for longer
# memories; note the logarithmic time axis.

# %%
taus, losses = result["taus"], result["losses"]  # one row of save times per ω
fig, ax = plt.subplots(figsize=(7, 3.5))
colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(losses)))
rows = zip(colours, result["inverse_omegas"], taus, losses, strict=True)
for colour, inverse_omega, tau, curve in rows:
    keep = tau > 0
    ax.plot(tau[keep], curve[keep], color=colour, label=f"1/ω = {inverse_omega:g}")
ax.set(xscale="log", xlabel="training time τ", ylabel="loss J(θ(τ))")
ax.set_title("Gradient flow on eq. 125: longer memory, longer plateau")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# `plot_fig3` draws the result. Left: the plateau and separation times on a log axis against
# $1/\omega$ with their least-squares lines; a straight line here is exponential growth in the
# memory $1/\omega$. Middle: the local slopes of $\log\tau$ between neighbouring points, which
# rise along the grid (the global $c_1$ is their average), against the saddle theory's. Right: the
# absolute values of the Hessian eigenvalues at $\theta(0)$ (grey) and of the smallest one.

# %%
plot_fig3(result)
plt.show()

# %% [markdown]
# ## Exponentially small curvature
#
# The start is a saddle: the smallest Hessian eigenvalue is negative (the direction that leads to
# the bump), and its magnitude shrinks with the memory, so the flow leaves the saddle slowly.
# Printed below: the spectrum at $\theta(0)$ for each $\omega$ and the fitted slope of
# $\log|\lambda_{\min}|$ against $1/\omega$. The same function works on any loss; here it is
# called directly for one target.

# %%
for inverse_omega, spectrum in zip(
    result["inverse_omegas"], result["hessian_eigs_start"], strict=True
):
    print(f"1/ω = {inverse_omega:5.1f}:  eigenvalues " + "  ".join(f"{e:+.2e}" for e in spectrum))
print(f"slope of log|λ_min| per unit of 1/ω: {result['hessian_slope']:.4f}")
target = curse.memory_target(1 / 8)
direct = memdyn.hessian_eigenvalues(lambda theta: curse.white_noise_loss(*theta, target), theta0)
print("direct call at 1/ω = 8:", np.array2string(np.asarray(direct), precision=4))

# %% [markdown]
# ## The curse of memory in approximation (§4)
#
# Training is slow; representing long memory is also expensive. `curse.experiments.approx` finds
# the best width-$m$ exponential sum (multi-start Adam then Newton on the closed-form loss) for
# polynomially decaying kernels $(1 + t)^{-(1+\omega)}$, which have no exponential decay rate, and
# for exponentially decaying ones $e^{-\beta t}(1 + t)^{-2}$ (Theorem 4.2's regime). It prints the
# relative $L^2$ error $\varepsilon(m) = \sqrt{J}/\|\rho\|$ for each width. Compare the rows: the
# smaller $\omega$ (heavier tail), the slower the error falls with $m$. The small mode uses two
# $\omega$, one $\beta$, widths up to 4 and few optimiser steps, so its errors are upper bounds
# of the best fits; the full mode reproduces the README's table (about 5 minutes).

# %%
approx_config = approx.ApproxConfig()
if SMALL:
    approx_config = dataclasses.replace(
        approx_config.quick(),
        omegas=(0.1, 2.0),
        betas=(1.0,),
        max_width=4,
        starts=2,
        adam_steps=60,
        newton_steps=30,
    )
fits = approx.run(approx_config)
widths = " ".join(f"{m:>9d}" for m in fits["widths"])
print(f"{'kernel':<26} m = {widths}")
for omega, errors in zip(fits["omegas"], fits["polynomial_errors"], strict=True):
    print(f"{f'(1+t)^-(1+{omega:g})':<26}     " + " ".join(f"{e:9.2e}" for e in errors))
for beta, errors in zip(fits["betas"], fits["exponential_errors"], strict=True):
    print(f"{f'exp(-{beta:g}t)(1+t)^-2':<26}     " + " ".join(f"{e:9.2e}" for e in errors))
for omega, needed in zip(fits["omegas"], fits["polynomial_min_width"], strict=True):
    table = ", ".join(
        f"ε = {eps:g}: {m:g}" for eps, m in zip(fits["epsilons"], needed, strict=True)
    )
    print(f"minimal width for ω = {omega:g} (nan: more than {fits['widths'][-1]}): {table}")

# %% [markdown]
# `plot_approx` shows the same errors against $m$ on log–log and semi-log axes, and the minimal
# width $m(\varepsilon)$ against $\omega$ (points missing where even the largest width fails).

# %%
plot_approx(fits)
plt.show()

# %% [markdown]
# ## Summary
#
# - The white-noise loss of a linear RNN is a closed-form function of $(a, w)$; it matches direct
#   integration.
# - On a target whose memory sits at $t = 1/\omega$, the force that starts learning it is of size
#   $e^{-w/\omega}$, and the gradient flow waits on a plateau whose length grows exponentially in
#   $1/\omega$ (the printed slope $c_1$), at a saddle whose negative curvature shrinks with the
#   memory.
# - Kernels with polynomial memory need more exponentials, i.e. more neurons, for a given accuracy
#   than exponentially decaying ones.
