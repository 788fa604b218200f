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
# # Bring your own model
#
# `memdyn`'s analyses do not know about the papers' models: they take a scalar loss of any
# `eqx.Module` (or pytree) and act on its floating-point arrays. This tutorial writes a small GRU
# from scratch, poses it a memory task, and then uses only `memdyn`'s public API to
#
# 1. train a sweep of 8 learning rates × 4 seeds as one `vmap`, compiled once
#    (`memdyn.make_optimizer`, `memdyn.train`);
# 2. find the plateaus of the loss curves (`memdyn.plateau_intervals`, `memdyn.hitting_time`);
# 3. measure what every swept model remembers, along training (`memdyn.jacobian_memory`);
# 4. follow the Hessian spectrum along training (`memdyn.hessian_eigenvalues_along`), and check
#    its ends with Lanczos (`memdyn.hessian_extremes`), which scales to models too large for a
#    dense Hessian.
#
# Set `MEMDYN_NOTEBOOK_FULL=1` to train on 256 sequences instead of 32. Training stays at 500
# steps: longer runs at these learning rates become chaotic (see below), and the check that the
# sweep equals single runs to 10⁻¹⁰ would then fail for reasons that have nothing to do with
# the sweep.

# %%
# %matplotlib inline
import os

import jax

jax.config.update("jax_enable_x64", True)  # plateau curvatures are small: use float64

import equinox as eqx
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.tree_util import Partial
from jaxtyping import Array, Float, PRNGKeyArray

import memdyn

SMALL = os.environ.get("MEMDYN_NOTEBOOK_FULL") is None
print("small mode" if SMALL else "full mode")

# %% [markdown]
# ## The model: a GRU written by hand
#
# A gated recurrent unit (Cho et al., 2014) with hidden state $h_t$ and scalar input $x_t$:
#
# $$r_t = \sigma(W_r x_t + U_r h_{t-1} + b_r), \quad z_t = \sigma(W_z x_t + U_z h_{t-1} + b_z),$$
# $$n_t = \tanh(W_n x_t + r_t \odot U_n h_{t-1} + b_n), \quad
#   h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1},$$
#
# read out at every step by a small MLP, $\hat y_t = \mathrm{MLP}(h_t)$. Nothing here comes from
# `memdyn`: it is an ordinary `eqx.Module` whose `__call__` handles one unbatched sequence. The
# `eqx.nn.MLP` head stores its activation function as a leaf of the pytree; `memdyn` trains and
# differentiates only the floating-point arrays and leaves such leaves alone.

# %%
class GRU(eqx.Module):
    input_weights: Float[Array, "3*hidden"]
    hidden_weights: Float[Array, "3*hidden hidden"]
    bias: Float[Array, "3*hidden"]
    head: eqx.nn.MLP

    def __init__(self, hidden_size: int, head_width: int, *, key: PRNGKeyArray):
        input_key, hidden_key, bias_key, head_key = jax.random.split(key, 4)
        bound = hidden_size**-0.5  # PyTorch's default GRU initialisation, U(±1/√hidden)
        uniform = lambda key, shape: jax.random.uniform(key, shape, minval=-bound, maxval=bound)
        self.input_weights = uniform(input_key, (3 * hidden_size,))
        self.hidden_weights = uniform(hidden_key, (3 * hidden_size, hidden_size))
        self.bias = uniform(bias_key, (3 * hidden_size,))
        self.head = eqx.nn.MLP(
            hidden_size, "scalar", head_width, depth=1, activation=jnp.tanh, key=head_key
        )

    def __call__(self, inputs: Float[Array, " time"]) -> Float[Array, " time"]:
        def step(hidden, x):
            reset_x, update_x, new_x = jnp.split(self.input_weights * x + self.bias, 3)
            reset_h, update_h, new_h = jnp.split(self.hidden_weights @ hidden, 3)
            reset = jax.nn.sigmoid(reset_x + reset_h)
            update = jax.nn.sigmoid(update_x + update_h)
            new = jnp.tanh(new_x + reset * new_h)
            hidden = (1 - update) * new + update * hidden
            return hidden, self.head(hidden)

        hidden = jnp.zeros(self.hidden_weights.shape[1], self.hidden_weights.dtype)
        return jax.lax.scan(step, hidden, inputs)[1]


HIDDEN_SIZE, HEAD_WIDTH = 6, 8
model = GRU(HIDDEN_SIZE, HEAD_WIDTH, key=jax.random.key(0))
parameters, _ = eqx.partition(model, eqx.is_inexact_array)
print(f"trainable parameters: {sum(leaf.size for leaf in jax.tree.leaves(parameters))}")
print(f"non-array leaf: the head's activation, {model.head.activation.__name__}")

# %% [markdown]
# ## The task: recall the input from `delay` steps ago
#
# Inputs are white noise, $x_t \sim \mathcal{N}(0, 1)$, and the target is the input `delay`
# steps back, $y_t = x_{t - \text{delay}}$, scored by the mean squared error over the second
# half of each sequence (so every delay up to half the length is scored on the same steps, and
# the arrays have the same shapes for every delay). Predicting 0 scores about 1, the variance of
# the input: a model that has not yet found a way to carry $x$ for `delay` steps sits there. The
# gradient that teaches it to do so travels back `delay` steps through the recurrence and shrinks
# on the way, so the longer the delay, the longer the plateau tends to be.
#
# The training set is fixed, so the loss is a deterministic function of the model; `Partial`
# makes the loss a pytree whose arrays (the data) are traced, so new data does not recompile.

# %%
LENGTH = 8  # steps per sequence; the loss scores steps LENGTH // 2, ..., LENGTH - 1
NUM_SEQUENCES = 32 if SMALL else 256
DELAY, LONGER_DELAY = 2, 4
inputs = jax.random.normal(jax.random.key(1), (NUM_SEQUENCES, LENGTH))


def recall_targets(inputs: Float[Array, "batch time"], delay: int) -> Float[Array, "batch half"]:
    """y_t = x_{t - delay} on the scored steps t = LENGTH // 2, ..., LENGTH - 1."""
    return inputs[:, LENGTH // 2 - delay : LENGTH - delay]


def recall_loss(model: GRU, inputs, targets) -> Float[Array, ""]:
    predictions = jax.vmap(model)(inputs)[:, LENGTH // 2 :]
    return jnp.mean((predictions - targets) ** 2)


loss = Partial(recall_loss, inputs=inputs, targets=recall_targets(inputs, DELAY))
print(f"loss of the untrained model (delay {DELAY}): {float(loss(model)):.4f}")

# %% [markdown]
# ## One run
#
# `memdyn.make_optimizer` builds an Optax optimiser whose learning rate is injected
# (`optax.inject_hyperparams`), i.e. stored in the optimiser state as data. `memdyn.train` runs
# all the steps in one compiled `lax.scan` and returns a `memdyn.Trajectory`: the save steps,
# the models at those steps (the GRU's arrays gain a leading axis) and their losses.

# %%
NUM_STEPS = 500
SAVE_EVERY = 10
optimizer = memdyn.make_optimizer("gd", 0.2)
run = memdyn.train(loss, model, optimizer, NUM_STEPS, save_every=SAVE_EVERY)
print(f"saved {run.times.shape[0]} models; hidden weights {run.thetas.hidden_weights.shape}")
middle = run.times.shape[0] // 2
print(
    f"loss at steps 0, {int(run.times[middle])}, {NUM_STEPS}: "
    + ", ".join(f"{float(run.losses[i]):.4f}" for i in (0, middle, -1))
)

# %% [markdown]
# ## A sweep compiled once: 8 learning rates × 4 seeds
#
# Because the learning rate is data, `memdyn.train(..., learning_rate=lr)` under `vmap` trains
# every learning rate at once; vmapping over the key that initialises the model adds the seeds.
# We use Equinox's `filter_vmap`, which, unlike `jax.vmap`, lets the returned models keep their
# non-array leaf (the activation). The counter `traces` goes up each time JAX traces `sweep`:
# calling it again on new data of the same shapes (a different delay) reuses the compilation.

# %%
LEARNING_RATES = jnp.geomspace(0.02, 0.3, 8)
SEEDS = jax.random.split(jax.random.key(2), 4)
traces = 0


@eqx.filter_jit
def sweep(learning_rates, seeds, loss):
    global traces
    traces += 1

    def one_run(learning_rate, seed):
        model = GRU(HIDDEN_SIZE, HEAD_WIDTH, key=seed)
        return memdyn.train(
            loss, model, optimizer, NUM_STEPS, save_every=SAVE_EVERY, learning_rate=learning_rate
        )

    over_seeds = eqx.filter_vmap(one_run, in_axes=(None, 0))
    return eqx.filter_vmap(over_seeds, in_axes=(0, None))(learning_rates, seeds)


delays = (DELAY, LONGER_DELAY)
runs = {}
for delay in delays:
    delay_loss = Partial(recall_loss, inputs=inputs, targets=recall_targets(inputs, delay))
    runs[delay] = sweep(LEARNING_RATES, SEEDS, delay_loss)
print(f"traces of the sweep: {traces}")
print(f"losses of one sweep: shape {runs[DELAY].losses.shape} (learning rate, seed, save)")

# %% [markdown]
# The sweep must be the same computation as single runs. We retrain two (learning rate, seed)
# pairs one at a time with a Python loop and compare every saved parameter and loss. In float64
# they agree to rounding error.

# %%
def select(tree, index):
    """Index the array leaves of `tree` (a sweep's trajectories), keep its other leaves."""
    return jax.tree.map(lambda leaf: leaf[index] if eqx.is_array(leaf) else leaf, tree)


def max_difference(first: memdyn.Trajectory, second: memdyn.Trajectory) -> float:
    """The largest absolute difference between two trajectories' parameters and losses."""
    first, second = (
        eqx.filter((run.thetas, run.losses), eqx.is_inexact_array) for run in (first, second)
    )
    differences = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), first, second)
    return float(max(jax.tree.leaves(differences)))


def single_run(lr_index: int, seed_index: int, perturbation: float = 0.0) -> memdyn.Trajectory:
    model = GRU(HIDDEN_SIZE, HEAD_WIDTH, key=SEEDS[seed_index])
    model = eqx.tree_at(lambda m: m.hidden_weights, model, model.hidden_weights + perturbation)
    return memdyn.train(
        loss,
        model,
        optimizer,
        NUM_STEPS,
        save_every=SAVE_EVERY,
        learning_rate=LEARNING_RATES[lr_index],
    )


worst = max(
    max_difference(single_run(lr_index, seed_index), select(runs[DELAY], (lr_index, seed_index)))
    for lr_index, seed_index in ((0, 0), (2, 1))
)
print(f"sweep vs loop: max abs difference {worst:.3e}")
assert worst <= 1e-10, worst

# %% [markdown]
# At the largest learning rates the two part ways, and not because of the sweep. Batched and
# unbatched kernels round differently, at the 10⁻¹⁶ level; at these rates gradient descent
# passes its stability limit (the spikes in the curves below; the Hessian section shows why) and
# becomes chaotic, amplifying any such difference. Two *single* runs whose initial weights differ
# by 10⁻¹⁵ part in the same way.

# %%
lr_index, seed_index = len(LEARNING_RATES) - 1, 0
single = single_run(lr_index, seed_index)
print(
    f"lr = {float(LEARNING_RATES[lr_index]):.2f}: sweep vs loop "
    f"{max_difference(single, select(runs[DELAY], (lr_index, seed_index))):.3e}; "
    f"loop vs loop from weights moved by 1e-15 "
    f"{max_difference(single, single_run(lr_index, seed_index, 1e-15)):.3e}"
)

# %% [markdown]
# ## Plateaus
#
# The loss curves of the delay-2 sweep, one panel per learning rate (every seed drawn): each sits
# near 1 before it drops.

# %%
times = np.asarray(runs[DELAY].times[0, 0])
fig, axes = plt.subplots(2, 4, figsize=(11, 4.5), sharex=True, sharey=True)
for ax, learning_rate, curves in zip(axes.flat, LEARNING_RATES, runs[DELAY].losses, strict=True):
    for curve in curves:
        ax.plot(times, np.asarray(curve), lw=1)
    ax.set_title(f"lr = {float(learning_rate):.2g}", fontsize=9)
    ax.set_yscale("log")
for ax in axes[1]:
    ax.set_xlabel("step")
for ax in axes[:, 0]:
    ax.set_ylabel("loss")
fig.suptitle(f"Delayed recall (delay {DELAY}), 8 learning rates × 4 seeds, one compilation")
fig.tight_layout()
plt.show()

# %% [markdown]
# Two measurements. `memdyn.plateau_intervals` finds the flat stretches of a curve (here: the
# loss stays within 5 % for at least a tenth of the run); `memdyn.hitting_time` with
# `criterion="loss"` gives the escape step, the first step at which the loss has fallen by
# `delta = 0.5` below its start. `hitting_time` is a pure `jnp` function, so it `vmap`s over the
# whole sweep; it returns `inf` (and `hit = False`) for runs that never escape.

# %%
def escape_steps(trajectories: memdyn.Trajectory) -> np.ndarray:
    escape = lambda run: memdyn.hitting_time(
        run.times, None, run.losses, delta=0.5, criterion="loss", log_time=False
    )
    return np.asarray(jax.vmap(jax.vmap(escape))(eqx.filter(trajectories, eqx.is_array)).time)


escapes = {delay: escape_steps(runs[delay]) for delay in delays}
for lr_index, learning_rate in enumerate(LEARNING_RATES):
    plateaus = memdyn.plateau_intervals(
        times, runs[DELAY].losses[lr_index, 0], tolerance=0.05, min_fraction=0.1, scale="linear"
    )
    first = "none"
    if plateaus:
        start, end, level = plateaus[0]
        first = f"steps {start:.0f}–{end:.0f} at loss {level:.3f}"
    print(
        f"lr = {float(learning_rate):.4f}: first plateau (seed 0) {first}; escape steps "
        + "; ".join(
            f"delay {delay}: " + " ".join(f"{step:.0f}" for step in escapes[delay][lr_index])
            for delay in delays
        )
    )
for delay in delays:
    escaped = np.isfinite(escapes[delay])
    print(
        f"delay {delay}: {escaped.sum()} of {escaped.size} runs escape within {NUM_STEPS} steps; "
        f"median escape step {np.median(escapes[delay]):.0f}"
    )

# %% [markdown]
# The same compiled sweep at delay 4 (runs that have not escaped by the end are drawn at the
# last step): fewer runs escape within the budget, and most that do escape later than at
# delay 2. Not every one: one seed escapes sooner at delay 4 at several learning rates, so the
# delay lengthens the plateau across seeds, not run by run.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for delay, marker in zip(delays, "os", strict=True):
    steps = np.minimum(escapes[delay], NUM_STEPS)
    rates = np.repeat(np.asarray(LEARNING_RATES)[:, None], steps.shape[1], axis=1)
    ax.scatter(rates, steps, marker=marker, label=f"delay {delay}", alpha=0.7)
ax.set(xscale="log", xlabel="learning rate", ylabel="escape step (loss down by 0.5)")
ax.legend()
plt.show()

# %% [markdown]
# ## What the models remember, along training and across learning rates
#
# The task's own memory kernel is 1 at lag `delay` and 0 elsewhere. A model's is what
# `memdyn.jacobian_memory` measures: the sensitivity of its last output to the input k steps
# earlier, $\hat\rho(k) = \mathbb{E}_x[\partial y_{T-1}/\partial x_{T-1-k}]$, averaged over the
# training sequences. It takes `apply(params, xs) -> ys` over `(time, input)`; our GRU reads a
# scalar per step, so a two-line adapter suffices. Three `filter_vmap`s give the kernel of every
# learning rate, seed and saved model of the delay-2 sweep (8 × 4 × 51 models) in one compiled
# call. We check one of them against a model measured alone and against central differences of
# the GRU's own forward pass.

# %%
def apply(model: GRU, xs: Float[Array, "time 1"]) -> Float[Array, "time 1"]:
    return model(xs[:, 0])[:, None]


def kernel_of(model: GRU) -> Float[Array, " lag"]:
    return memdyn.jacobian_memory(apply, model, inputs[:, :, None]).kernel[:, 0, 0]


kernels = eqx.filter_jit(eqx.filter_vmap(eqx.filter_vmap(eqx.filter_vmap(kernel_of))))(
    runs[DELAY].thetas
)
kernels = np.asarray(kernels)  # (learning rate, seed, save, lag)
probe = select(runs[DELAY].thetas, (2, 1, 20))
alone = np.asarray(kernel_of(probe))
print(f"memory kernel, vmapped vs one model: max abs difference {np.max(np.abs(kernels[2, 1, 20] - alone)):.1e}")
h, lag = 1e-6, DELAY
moved = jnp.zeros_like(inputs).at[:, LENGTH - 1 - lag].set(h)
central = (jax.vmap(probe)(inputs + moved)[:, -1] - jax.vmap(probe)(inputs - moved)[:, -1]) / (2 * h)
print(f"memory kernel at lag {lag} vs central differences: {abs(float(central.mean()) - alone[lag]):.1e}")

at_delay = kernels[..., DELAY]  # (learning rate, seed, save)
print(
    f"memory at lag {DELAY} before training: max |ρ̂| {np.max(np.abs(at_delay[..., 0])):.4f}; "
    f"after {NUM_STEPS} steps, mean over seeds per learning rate: "
    + " ".join(f"{value:.3f}" for value in at_delay[..., -1].mean(axis=1))
)

# %% [markdown]
# The memory at lag 2 rises from 0 to about 0.9 in every run that escapes, and the larger
# learning rates get there sooner. Does the memory arrive with the loss's escape? A model that
# outputs $c\,x_{t-2}$ and nothing else scores $(1-c)^2$, so the loss is down by 0.5 when
# $c = 1 - \sqrt{0.5} \approx 0.29$. The GRU gets there sooner: its memory passes 0.29 well
# before its loss has fallen by 0.5, because what else its output carries (the nonlinear part of
# the head, the other lags) keeps the loss up for a while. Its memory passes 0.5 only after the
# escape, and only in runs that escape.

# %%
def first_step(curves: np.ndarray, level: float) -> np.ndarray:
    """The first saved step at which each curve reaches `level` (inf if never)."""
    reached = curves >= level
    return np.where(reached.any(axis=-1), times[np.argmax(reached, axis=-1)], np.inf)


escaped = np.isfinite(escapes[DELAY])
for level in (1 - np.sqrt(0.5), 0.5):
    arrival = first_step(at_delay, level)
    arrived = np.isfinite(arrival)
    both = arrived & escaped
    lag_steps = arrival[both] - escapes[DELAY][both]
    print(
        f"memory passes {level:.3f} in {arrived.sum()} runs ({(arrived & ~escaped).sum()} of "
        f"them never escape); in the {both.sum()} that also escape, memory minus escape step: "
        f"median {np.median(lag_steps):+.0f}, min {lag_steps.min():+.0f}, max {lag_steps.max():+.0f}"
    )

fig, ax = plt.subplots(figsize=(6, 3.5))
colours = plt.cm.viridis(np.linspace(0, 0.9, len(LEARNING_RATES)))
for colour, learning_rate, curves, steps in zip(
    colours, LEARNING_RATES, at_delay, escapes[DELAY], strict=True
):
    ax.plot(times, curves.T, color=colour, lw=0.8)
    ax.plot([], [], color=colour, label=f"lr = {float(learning_rate):.2g}")
    ax.scatter(steps[np.isfinite(steps)], np.full(np.isfinite(steps).sum(), -0.05), color=colour, marker="|")
ax.set(xlabel="step", ylabel=f"memory at lag {DELAY}, ρ̂({DELAY})")
ax.set_title("Memory along training (ticks: the loss's escape steps)", fontsize=10)
ax.legend(fontsize=7, ncol=2)
plt.show()

# %% [markdown]
# ## The Hessian along training
#
# The model has about 200 parameters, so the exact Hessian is cheap.
# `memdyn.hessian_eigenvalues_along` takes the stacked models of a trajectory and returns the
# spectrum at each. We follow one run of the delay-2 sweep at 6 of its saved points.
#
# At the start the smallest eigenvalue is negative: the untrained model sits near a saddle, and
# the plateau is the time it takes to leave it along its few descending
# directions. As the model learns to remember, the largest eigenvalue grows several-fold.
# Gradient descent with step $\eta$ is stable only while $\eta\, \lambda_{\max} < 2$; with
# $\lambda_{\max}$ growing during training, the larger learning rates of the sweep cross that
# line, which is where their loss curves spike and where runs become chaotic.

# %%
lr_index, seed_index = 4, 0
every = NUM_STEPS // SAVE_EVERY // 5
member = select(runs[DELAY], (lr_index, seed_index))
saves = slice(None, None, every)
followed = memdyn.Trajectory(
    times=member.times[saves], thetas=select(member.thetas, saves), losses=member.losses[saves]
)
spectra = np.asarray(memdyn.hessian_eigenvalues_along(loss, followed.thetas))
print(f"learning rate {float(LEARNING_RATES[lr_index]):.4f}, seed {seed_index}")
for step, value, spectrum in zip(followed.times, followed.losses, spectra, strict=True):
    print(
        f"step {int(step):4d}: loss {float(value):.4f}  λ_min = {spectrum[0]:+.3e}  "
        f"λ_max = {spectrum[-1]:+.3e}"
    )

# %%
fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
top.plot(followed.times, followed.losses)
top.set(yscale="log", ylabel="loss")
steps = np.repeat(np.asarray(followed.times)[:, None], spectra.shape[1], axis=1)
colours = np.where(spectra < 0, "C3", "0.6").ravel()
bottom.scatter(steps.ravel(), np.abs(spectra).ravel(), s=2, c=colours)
bottom.set(yscale="log", xlabel="step", ylabel="|eigenvalue| (red: negative)")
top.set_title("Hessian spectrum along one run")
plt.show()

# %% [markdown]
# For a model too large for a dense Hessian, `memdyn.hessian_extremes` runs Lanczos on
# Hessian-vector products alone. Its outermost Ritz values agree with the exact ends:

# %%
end = followed.model_at(-1)
ritz = memdyn.hessian_extremes(loss, end, 60, key=jax.random.key(3))
print(f"Lanczos λ_min = {float(ritz[0]):+.6e}, λ_max = {float(ritz[-1]):+.6e}")
print(f"exact   λ_min = {spectra[-1, 0]:+.6e}, λ_max = {spectra[-1, -1]:+.6e}")

# %% [markdown]
# ## The gradient flow, and which solver integrates it
#
# Gradient descent with a small step follows the gradient flow $d\theta/d\tau = -\nabla J(\theta)$
# (τ = learning rate × steps). `memdyn.gradient_flow` integrates it with Diffrax and saves θ and
# J at the times asked for. Its default solver is chosen from the flow's stiffness, read off
# at θ(0) with a few Hessian-vector products: an explicit step is stable only for
# $h \lesssim 3.5/\lambda_{\max}$, so to a horizon T it needs about $\lambda_{\max} T / 3.5$
# steps, while an implicit step builds and factorises the n × n Jacobian (n = number of
# parameters). With $\lambda_{\max} T \le 250\, n$ the flow gets explicit Tsit5, above it
# implicit Kvaerno3. This GRU over τ = 20 is far below the line, so Tsit5 runs; on a 217-parameter
# LRU that took 0.3 s against 54 s for Kvaerno3, for the same answer to 2·10⁻⁹. The curse of
# memory's flows (eq. 125 over τ up to 10⁶) are far above it: they turn stiff after their
# escape, where Tsit5 does not finish in a million steps. Inside `jit` or `vmap` the choice
# cannot be made from values and is Kvaerno3: there, pass `solver=diffrax.Tsit5()` for a
# flow that is not stiff.

# %%
FLOW_HORIZON = 20.0
flow_times = jnp.concatenate([jnp.zeros(1), jnp.geomspace(1e-2, FLOW_HORIZON, 30)])
top = memdyn.hessian_extremes(loss, model, 10, key=jax.random.key(4))[-1]
count = sum(leaf.size for leaf in jax.tree.leaves(parameters))
print(f"λ_max·T = {float(top) * FLOW_HORIZON:.0f} against 250·n = {250 * count}")
flow = memdyn.gradient_flow(loss, model, flow_times)
print(
    f"gradient flow: finished {bool(flow.finished)}, loss {float(flow.losses[0]):.4f} at τ = 0, "
    f"{float(flow.losses[-1]):.4f} at τ = {FLOW_HORIZON:g}"
)
assert bool(flow.finished) and np.all(np.diff(np.asarray(flow.losses)) <= 1e-10)

# %% [markdown]
# ## Summary
#
# - Any `eqx.Module` works: here a hand-written GRU with an MLP head whose activation function
#   is a non-array leaf.
# - A learning-rate × seed sweep is one `filter_vmap` over `memdyn.train` and is traced once; it
#   matches single runs to rounding error.
# - On delayed recall the loss sits on a plateau near the input variance before it drops, and
#   at a longer delay fewer runs escape it; `memdyn.hitting_time` and `memdyn.plateau_intervals`
#   measure it.
# - `memdyn.hessian_eigenvalues_along` gives the exact spectrum along training; Lanczos
#   (`memdyn.hessian_extremes`) gives its ends at the cost of Hessian-vector products.
# - `memdyn.gradient_flow` picks an explicit or an implicit solver from λ_max·T at θ(0); pass
#   `solver=` inside `jit`/`vmap`, where it defaults to the implicit one.
