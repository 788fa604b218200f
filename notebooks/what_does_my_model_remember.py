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
# # What does my model remember?
#
# A sequence model maps inputs $x_0, x_1, \dots$ to outputs $y_0, y_1, \dots$. How far back
# does $y_t$ look, how does its dependence on $x_{t-k}$ fall off with the lag $k$, and what
# would it take a linear RNN to do the same? Li et al. (*On the Curse of Memory*, ICLR 2021)
# answer these for a linear functional $y_t = \sum_k \rho_k x_{t-k}$ through its **memory
# kernel** $\rho$: a kernel that decays exponentially is cheap for an RNN, one with a power-law
# tail is not (the curse of memory). This guide writes a small tanh RNN by hand, trains it on a
# target with a power-law kernel, and uses only public names to
#
# 1. read the model's memory (`memdyn.heaviside_memory`, `memdyn.impulse_response`,
#    `memdyn.jacobian_memory`), its horizon and decay type (`memdyn.memory_horizon`,
#    `memdyn.fit_decay`), for 4 seeds in one `vmap`;
# 2. estimate a kernel from input–output data alone (`memdyn.estimate_memory_kernel`), first of
#    the target, where the truth is known, then of the trained model: how linear is it?
# 3. turn an estimated kernel into the width a linear RNN needs (`curse.SampledKernel`,
#    `curse.fit_widths`, `curse.minimal_width`).
#
# Set `MEMDYN_NOTEBOOK_FULL=1` to train longer on more sequences, estimate from more data and
# fit wider exponential sums.

# %%
# %matplotlib inline
import os

import jax

jax.config.update("jax_enable_x64", True)  # the kernel estimate and the width fits need float64

import equinox as eqx
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, Float, PRNGKeyArray

import curse
import memdyn

SMALL = os.environ.get("MEMDYN_NOTEBOOK_FULL") is None
print("small mode" if SMALL else "full mode")

# %% [markdown]
# ## The target: a power-law memory
#
# Inputs are white noise, $x_t \sim \mathcal{N}(0, 1)$, each sequence starting at rest (no
# inputs before $t = 0$), and the target output is the linear functional
#
# $$y_t = \sum_{k=0}^{K-1} \rho_k\, x_{t-k}, \qquad \rho_k = c\,(1 + k)^{-\alpha},$$
#
# with $c = 0.8$, $\alpha = 1.5$ and $K = 32$ lags: a kernel with no exponential scale, the
# kind the curse of memory says an RNN approximates badly. Because it is linear, all three of
# `memdyn`'s memory functions must return $\rho$ exactly when the target itself is written as a
# model. Every memory function takes a model as `apply(params, xs) -> ys`, inputs
# `(time, input)` to outputs `(time, output)`; the target's `params` are its kernel.

# %%
LAGS = 32
LENGTH = 64  # steps per sequence
SCALE, EXPONENT = 0.8, 1.5
true_kernel = SCALE * (1.0 + jnp.arange(LAGS)) ** -EXPONENT


def convolve(kernel: Float[Array, " lag"], xs: Float[Array, "time 1"]) -> Float[Array, "time 1"]:
    """y_t = Σ_{k ≤ t} ρ_k x_{t−k}: the linear functional of `kernel`, started at rest."""
    padded = jnp.concatenate([jnp.zeros(kernel.shape[0] - 1), xs[:, 0]])
    return jnp.convolve(padded, kernel, mode="valid")[:, None]


heaviside = memdyn.heaviside_memory(convolve, true_kernel, jnp.ones(1), LAGS)
impulse = memdyn.impulse_response(convolve, true_kernel, 1, LAGS)[:, 0, 0]
probe = jax.random.normal(jax.random.key(0), (4, LAGS, 1))
jacobian = memdyn.jacobian_memory(convolve, true_kernel, probe).kernel[:, 0, 0]
print(
    "target as a model, max |memory function − ρ|: "
    f"Heaviside {float(jnp.max(jnp.abs(heaviside - true_kernel[1:]))):.1e} (lags 1..{LAGS - 1}), "
    f"impulse {float(jnp.max(jnp.abs(impulse - true_kernel))):.1e}, "
    f"Jacobian {float(jnp.max(jnp.abs(jacobian - true_kernel))):.1e}"
)


@jax.jit
def summarise(kernel: Float[Array, " lag"], noise_floor: Float[Array, " lag"]):
    """The horizon holding 95% of the kernel's mass, and its decay fit."""
    horizon = memdyn.memory_horizon(kernel, 0.05, noise_floor=noise_floor)
    return horizon, memdyn.fit_decay(kernel, noise_floor=noise_floor)


no_floor = jnp.zeros(LAGS)
target_horizon, target_decay = summarise(true_kernel, no_floor)
print(
    f"target: horizon (95% of |ρ| mass) {int(target_horizon)} lags; decay "
    f"{target_decay.preferred_name()}, power exponent {float(target_decay.power_exponent):.6f} "
    f"(R² {float(target_decay.power_r2):.6f}), exponential R² "
    f"{float(target_decay.exponential_r2):.4f}"
)

# %% [markdown]
# `memory_horizon` and `fit_decay` are pure JAX; `jax.jit` spares the many small operations
# they run one by one otherwise. `fit_decay` places entry $k$ at $t = k + 1$, where this kernel
# is exactly $c\, t^{-\alpha}$: the power law fits with R² = 1 and recovers $\alpha$. The
# horizon is relative to the window of 32 lags: a longer window of a heavy tail pushes it out.
#
# ## The model: an Elman RNN written by hand
#
# $$h_t = \tanh(W h_{t-1} + u\, x_t + b), \qquad \hat y_t = v^\top h_t, \qquad h_{-1} = 0.$$
#
# Nothing here comes from `memdyn`: an `eqx.Module` whose `__call__` handles one unbatched
# sequence of scalars. `apply` adapts it to the memory functions' `(time, 1)` convention.

# %%
class ElmanRNN(eqx.Module):
    input_weights: Float[Array, " hidden"]
    recurrent_weights: Float[Array, "hidden hidden"]
    bias: Float[Array, " hidden"]
    readout: Float[Array, " hidden"]

    def __init__(self, hidden_size: int, *, key: PRNGKeyArray):
        input_key, recurrent_key, readout_key = jax.random.split(key, 3)
        self.input_weights = jax.random.normal(input_key, (hidden_size,))
        # Spectral radius about 0.9: memory that fades, neither at once nor never.
        self.recurrent_weights = 0.9 * jax.random.orthogonal(recurrent_key, hidden_size)
        self.bias = jnp.zeros(hidden_size)
        self.readout = jax.random.normal(readout_key, (hidden_size,)) / hidden_size

    def __call__(self, inputs: Float[Array, " time"]) -> Float[Array, " time"]:
        def step(hidden, x):
            hidden = jnp.tanh(self.recurrent_weights @ hidden + self.input_weights * x + self.bias)
            return hidden, self.readout @ hidden

        return jax.lax.scan(step, jnp.zeros_like(self.bias), inputs)[1]


def apply(model: ElmanRNN, xs: Float[Array, "time 1"]) -> Float[Array, "time 1"]:
    return model(xs[:, 0])[:, None]


HIDDEN_SIZE = 8
SEEDS = 4

# %% [markdown]
# ## Training 4 seeds at once
#
# The training set is fixed: `NUM_SEQUENCES` white-noise sequences and their exact targets.
# `memdyn.train` runs Adam in one compiled `lax.scan`; `eqx.filter_vmap` over the key that
# initialises the model trains the 4 seeds together, and `eqx.filter_jit` compiles the
# initialisation with the training rather than running it op by op. The trajectory saves the
# start and the end (`save_every=NUM_STEPS`); its arrays gain a leading seed axis before the
# save axis, so the last save of every seed is `leaf[:, -1]`: a stack of 4 `ElmanRNN`s, each
# array with a leading seed axis.

# %%
NUM_SEQUENCES = 64 if SMALL else 512
NUM_STEPS = 300 if SMALL else 3000
train_inputs = jax.random.normal(jax.random.key(1), (NUM_SEQUENCES, LENGTH))
train_targets = jax.vmap(convolve, in_axes=(None, 0))(true_kernel, train_inputs[..., None])[..., 0]


def mean_squared_error(model: ElmanRNN, inputs, targets) -> Float[Array, ""]:
    return jnp.mean((jax.vmap(model)(inputs) - targets) ** 2)


loss = Partial(mean_squared_error, inputs=train_inputs, targets=train_targets)
optimizer = memdyn.make_optimizer("adam", 1e-2)


@eqx.filter_jit
@eqx.filter_vmap
def train_seed(key: PRNGKeyArray) -> memdyn.Trajectory:
    model = ElmanRNN(HIDDEN_SIZE, key=key)
    return memdyn.train(loss, model, optimizer, NUM_STEPS, save_every=NUM_STEPS)


runs = train_seed(jax.random.split(jax.random.key(2), SEEDS))
models = jax.tree.map(lambda leaf: leaf[:, -1], runs.thetas)
print(f"target variance per step {float(jnp.mean(train_targets**2)):.4f}")
print(
    f"training loss, step 0 → {NUM_STEPS}: "
    + "; ".join(
        f"{float(first):.4f} → {float(last):.4f}"
        for first, last in zip(runs.losses[:, 0], runs.losses[:, -1], strict=True)
    )
)

# %% [markdown]
# ## 1. The model's memory
#
# Three views of it, which agree for a linear model and differ for this one:
#
# - `heaviside_memory`: the jumps $|y_{t+1} - y_t|$ of the response to a constant input
#   switched on at $t = 0$, less the response to zero input (here of height 0.1, divided by
#   0.1; entry $t$ is lag $t + 1$);
# - `impulse_response`: $\partial y_t / \partial x_0$ with all inputs zero, the linear part of
#   the response to an impulse at rest;
# - `jacobian_memory`: $\partial y_{T-1} / \partial x_{T-1-k}$ along data sequences (fresh
#   white-noise sequences, not those trained on), averaged over them: the linearised kernel
#   where the model is actually used. Its `magnitude`, the mean of
#   $|\partial y_{T-1}/\partial x_{T-1-k}|$, does not cancel across sequences and is what the
#   horizon and the decay fit read; we keep the mean `kernel` too, for section 2.
#
# Each function is `jax.vmap`-able over a stack of models, so one call reads all 4 seeds; a
# loop over the seeds must give the same numbers. (`eqx.filter_jit` compiles the three
# together, once for the stack and once for a single model.)

# %%
STEP_HEIGHT = 0.1
NUM_DATA = 64 if SMALL else 512
data_inputs = jax.random.normal(jax.random.key(3), (NUM_DATA, LENGTH))


@eqx.filter_jit
def memory_of(model: ElmanRNN) -> dict[str, Array]:
    step = memdyn.heaviside_memory(
        apply, model, jnp.full(1, STEP_HEIGHT), LAGS, subtract_baseline=True
    )
    jacobian = memdyn.jacobian_memory(apply, model, data_inputs[..., None])
    return {
        "heaviside": step / STEP_HEIGHT,
        "impulse": memdyn.impulse_response(apply, model, 1, LAGS)[:, 0, 0],
        "jacobian": jacobian.magnitude[:LAGS],
        "mean jacobian": jacobian.kernel[:LAGS, 0, 0],
    }


def seed(i: int) -> ElmanRNN:
    return jax.tree.map(lambda leaf: leaf[i], models)


memories = jax.vmap(memory_of)(models)
looped = [memory_of(seed(i)) for i in range(SEEDS)]
difference = max(
    float(jnp.max(jnp.abs(memories[name][i] - looped[i][name])))
    for i in range(SEEDS)
    for name in memories
)
print(f"vmap vs loop over {SEEDS} seeds: max abs difference {difference:.1e}")

# %% [markdown]
# An independent check of `impulse_response`: with zero inputs the state follows
# $h^0_t = \tanh(W h^0_{t-1} + b)$, and the chain rule gives
# $\partial y_t / \partial x_0 = v^\top D_t W D_{t-1} W \cdots W D_0\, u$ with
# $D_t = \mathrm{diag}(1 - (h^0_t)^2)$. In NumPy, for every seed:

# %%
def chain_rule_impulse(model: ElmanRNN, length: int) -> np.ndarray:
    weights = (model.recurrent_weights, model.input_weights, model.bias, model.readout)
    recurrent, input_weights, bias, readout = (np.asarray(w) for w in weights)
    hidden = np.tanh(bias)  # h⁰_0: the state after a zero input
    sensitivity = (1 - hidden**2) * input_weights  # ∂h_0/∂x_0
    response = [readout @ sensitivity]
    for _ in range(length - 1):
        hidden = np.tanh(recurrent @ hidden + bias)
        sensitivity = (1 - hidden**2) * (recurrent @ sensitivity)  # ∂h_t/∂x_0
        response.append(readout @ sensitivity)
    return np.asarray(response)


chain_rule = np.stack([chain_rule_impulse(seed(i), LAGS) for i in range(SEEDS)])
print(
    "impulse response vs NumPy chain rule: max abs difference "
    f"{np.max(np.abs(np.asarray(memories['impulse']) - chain_rule)):.1e}"
)

# %% [markdown]
# Horizon and decay type of each seed's Jacobian memory, one `vmap` of `summarise` over the
# seeds (the `DecayFit`'s fields gain the seed axis; `preferred` indexes `memdyn.DECAY_TYPES`):

# %%
horizons, decays = jax.vmap(summarise)(memories["jacobian"], jnp.zeros((SEEDS, LAGS)))
for i in range(SEEDS):
    print(
        f"seed {i}: horizon {int(horizons[i])} lags; decay "
        f"{memdyn.DECAY_TYPES[int(decays.preferred[i])]} (exponential R² "
        f"{float(decays.exponential_r2[i]):.3f}, rate {float(decays.exponential_rate[i]):.3f}; "
        f"power law R² {float(decays.power_r2[i]):.3f}, exponent "
        f"{float(decays.power_exponent[i]):.3f})"
    )

# %%
lags = np.arange(LAGS)
fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), sharey=True)
views = (
    ("heaviside", lags[1:], "Heaviside (height 0.1)"),
    ("impulse", lags, "impulse at rest"),
    ("jacobian", lags, "Jacobian along data (magnitude)"),
)
for ax, (name, at, title) in zip(axes, views, strict=True):
    ax.plot(lags + 1, np.asarray(true_kernel), "k--", label="target ρ")
    for i in range(SEEDS):
        ax.plot(at + 1, np.abs(np.asarray(memories[name][i])), alpha=0.8, label=f"seed {i}")
    ax.set(xscale="log", yscale="log", xlabel="lag + 1", title=title, ylim=(1e-4, 2))
axes[0].set_ylabel("|memory|")
axes[0].legend(fontsize=7)
plt.show()

# %% [markdown]
# Along data (right) every seed follows the power law over the first ten lags or so, then its
# memory falls away faster than $\rho$: the horizons are shorter than the target's. That
# tail is what tells the two decay types apart. After 300 steps (small mode) `fit_decay` finds
# the two fits nearly equally good (R² about 0.95 each) and its label goes either way from
# seed to seed; trained for 3,000 steps (full mode) the seeds follow the power law further and
# it prefers the power law for each, with R² near 0.98. Read R² and the window with the
# label, not the label alone. The Heaviside and impulse views probe the model where it was
# never trained (a sustained input of 0.1; no input at all) and their tails differ from seed
# to seed: for a nonlinear model, which memory you measure depends on the input you measure
# it with.

# %% [markdown]
# ## 2. A kernel from data alone
#
# `memdyn.estimate_memory_kernel` needs no model: given input and output sequences it fits
# $y_t \approx b + \sum_{k<K} \hat\rho_k x_{t-k}$ by ridge regression, chooses the penalty by
# cross-validation over whole sequences, gives bootstrap intervals, and reports the fraction of
# the outputs' variance a linear functional explains on held-out sequences.
#
# We ask it of five datasets that share their inputs (the fresh sequences above): the target
# with measurement noise of standard deviation 0.1 added, where the truth is known, and the
# outputs of the 4 trained models, to see how much of what each does is a linear functional of
# its input. The estimator `vmap`s over the datasets: one call, one compilation.

# %%
NOISE = 0.1
clean = jax.vmap(convolve, in_axes=(None, 0))(true_kernel, data_inputs[..., None])[..., 0]
noisy = clean + NOISE * jax.random.normal(jax.random.key(5), clean.shape)
model_outputs = jax.vmap(lambda model: jax.vmap(model)(data_inputs))(models)
datasets = jnp.concatenate([noisy[None], model_outputs])
estimates = jax.vmap(
    lambda outputs: memdyn.estimate_memory_kernel(data_inputs, outputs, LAGS, key=jax.random.key(6))
)(datasets)
estimate = jax.tree.map(lambda leaf: leaf[0], estimates)  # the noisy target's
inside = (estimate.lower <= true_kernel) & (true_kernel <= estimate.upper)
print(
    f"target: held-out R² {float(estimate.explained_variance):.4f}, relative penalty "
    f"{float(estimate.penalty):.0e}, max |ρ̂ − ρ| "
    f"{float(jnp.max(jnp.abs(estimate.kernel - true_kernel))):.4f}, truth inside the "
    f"{estimate.level:.0%} band at {int(jnp.sum(inside))} of {LAGS} lags"
)
for k in (0, 1, 2, 4, 8, 16):
    print(
        f"  lag {k:2d}: ρ̂ = {float(estimate.kernel[k]):+.4f} ± "
        f"{float(estimate.standard_error[k]):.4f}  (ρ = {float(true_kernel[k]):.4f})"
    )
floor = 2 * estimate.standard_error
estimated_horizon, estimated_decay = summarise(estimate.kernel, floor)
print(
    f"estimate: horizon {int(estimated_horizon)} lags above 2 s.e.; decay "
    f"{estimated_decay.preferred_name()} over {int(estimated_decay.points)} lags, power exponent "
    f"{float(estimated_decay.power_exponent):.3f}"
)

# %% [markdown]
# The noise caps R² at the signal's share of the outputs' variance. Where $\rho_k$ sinks to
# about twice its standard error the estimate turns to noise, which is why the horizon and the
# decay fit take a `noise_floor`: without one, noise at the far lags stretches the horizon.
#
# For the trained models, compare $\hat\rho$ with the mean Jacobian kernel along the same
# inputs (`jacobian_memory(...).kernel`, not the magnitude): for a model that is nearly linear
# where it is used they agree.

# %%
for i in range(SEEDS):
    fitted, linearised = estimates.kernel[i + 1], memories["mean jacobian"][i]
    gap = float(jnp.linalg.norm(fitted - linearised) / jnp.linalg.norm(fitted))
    print(
        f"seed {i}: a linear functional explains {float(estimates.explained_variance[i + 1]):.4f} "
        f"of the output variance (held out); ‖ρ̂ − mean Jacobian‖ / ‖ρ̂‖ = {gap:.3f}"
    )

# %% [markdown]
# Each trained model is a linear functional of its input to within a fraction of a percent of
# its output variance, and its $\hat\rho$ agrees with its mean Jacobian to a few percent or
# better (the Jacobian is read at the last step of each sequence, the regression over all
# steps). Seed 0's $\hat\rho$ (red) follows the target's head and drops below it in the
# tail, as its Jacobian memory did.

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.fill_between(
    lags + 1,
    estimate.lower,
    estimate.upper,
    color="C0",
    alpha=0.3,
    label=f"{estimate.level:.0%} bootstrap band",
)
ax.plot(lags + 1, estimate.kernel, "C0o", ms=3, label="ρ̂ from noisy target data")
ax.plot(lags + 1, true_kernel, "k--", label="true ρ")
ax.plot(lags + 1, estimates.kernel[1], "C3s", ms=3, label="ρ̂ of the trained model (seed 0)")
ax.set(xlabel="lag + 1", ylabel="kernel", xscale="log")
ax.set_yscale("symlog", linthresh=1e-2)  # the estimate's tail crosses zero
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. The width a linear RNN needs
#
# A linear RNN of width $m$ has a kernel that is a sum of $m$ exponentials. How many does a
# kernel need to be matched to a relative $L^2$ error $\varepsilon$? That is the curse's
# question (Li et al., §4, Theorem 4.2), and `curse` answers it for any kernel known on a grid:
# `curse.SampledKernel` turns the weights $\hat\rho_k$ into a continuous kernel (the cell means
# $\hat\rho_k / \Delta$ at the cells' midpoints, joined linearly, with one step $\Delta = 1$ per
# lag), `curse.fit_widths` fits the best exponential sum of every width $m = 1, 2, \dots$ and
# returns the errors $\varepsilon(m)$, and `curse.minimal_width` reads off $m(\varepsilon)$.
# We ask it of the true kernel, of its estimate from noisy data, and of what seed 0 learned.
# The fits need float64 (on here already; elsewhere wrap them in `jax.enable_x64(True)`).

# %%
MAX_WIDTH = 3 if SMALL else 6
EPSILONS = (0.2, 0.1, 0.05) if SMALL else (0.2, 0.1, 0.05, 0.02, 0.01)
kernels = {
    "true ρ": true_kernel,
    "estimated ρ̂": estimate.kernel,
    "model ρ̂ (seed 0)": estimates.kernel[1],
}
with jax.enable_x64(True):
    errors, _ = curse.fit_widths(
        [curse.SampledKernel(kernel, 1.0) for kernel in kernels.values()],
        MAX_WIDTH,
        key=jax.random.key(8),
        starts=3 if SMALL else 12,
        adam_steps=50 if SMALL else 300,
        newton_steps=30 if SMALL else 200,
        desc="exponential-sum fits",
    )
for name, row in zip(kernels, errors, strict=True):
    widths = ", ".join(f"m({eps:g}) = {curse.minimal_width(row, eps):g}" for eps in EPSILONS)
    print(f"{name}: ε(m) = " + " ".join(f"{e:.4f}" for e in row) + f"; {widths}")

# %%
fig, ax = plt.subplots(figsize=(5, 3.4))
for name, row in zip(kernels, errors, strict=True):
    ax.plot(np.arange(1, MAX_WIDTH + 1), row, "o-", label=name)
ax.set(yscale="log", xlabel="width m (exponentials)", ylabel="relative L² error ε(m)")
ax.set_xticks(np.arange(1, MAX_WIDTH + 1))
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# The estimate from noisy data predicts the same widths as the true kernel: its errors ε(m)
# match the truth's to about 10⁻³, well inside the gaps between the ε asked for. Each added
# exponential buys less than a factor of 2 in ε, and less as m grows (in full mode no width up
# to 6 reaches ε = 0.01): a kernel with an exponential scale gains more per exponential
# (Theorem 4.2; `curse approx` compares the two), and a power-law tail longer than this 32-lag
# window would gain less still. The trained RNN's linear part needs no more exponentials than
# the target at these ε: its memory is the target's with the tail cut short, which an
# exponential sum matches slightly better.

# %% [markdown]
# ## Summary
#
# - Any model written as `apply(params, xs) -> ys` has three memory functions; for a linear one
#   they all return its kernel, for a tanh RNN they differ and each depends on its input.
#   All three `vmap` over a stack of trained models.
# - `memory_horizon` and `fit_decay` summarise a kernel (`jax.jit` them).
# - `estimate_memory_kernel` recovers a known kernel from noisy data with bootstrap bands, and
#   measures how linear a trained model is; it `vmap`s over datasets.
# - `curse.fit_widths` turns any of these kernels into the width a linear RNN needs.
