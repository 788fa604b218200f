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
# # DecayNet: a study of the cell states of LSTMs
#
# A walk through *DecayNet: A Study on the Cell States of LSTMs* (ICLR 2019 submission) with the
# `decaynet` package. The LSTM's cell state obeys
# $s_t = f_t \odot s_{t-1} + i_t \odot a_t$ with forget gate $f_t$, input gate $i_t$ and cell input
# $a_t$. The paper reads this update as a time-varying scalar map and studies it with cobweb
# diagrams; it then replaces the forget gate by a *monotonically decaying* one (DecayNet) and
# compares the two networks on row-by-row MNIST (Table 2).
#
# Set `MEMDYN_NOTEBOOK_FULL=1` to run the paper-sized Table 2 (20 seeds, full data, 6 models)
# instead of the small one.

# %%
# %matplotlib inline
import dataclasses
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from decaynet import DecayCell, LSTMCell, cell_state_map, cobweb, count_increases, load
from decaynet.experiments import cobweb as cobweb_experiment
from decaynet.experiments import table2
from decaynet.plots import cobweb_figure, table2_figure

SMALL = os.environ.get("MEMDYN_NOTEBOOK_FULL") is None
print("small mode" if SMALL else "full (paper-sized) mode")

# %% [markdown]
# ## The cell-state map and its cobwebs
#
# Freeze the gates and let the cell input depend on the state through $\tanh$: one unit's update
# is the scalar map $T(x) = f x + i \tanh(x)$ (the paper's Fig. 2). A cobweb diagram iterates a
# map graphically: from $(x_{t-1}, x_{t-1})$ on the diagonal go vertically to the curve
# $(x_{t-1}, T(x_{t-1}))$, then horizontally back to the diagonal at $(x_t, x_t)$.
#
# The slope at the origin, $T'(0) = f + i$, decides the regime. If $f + i < 1$ the origin is a
# *sink*: the state is caught and decays to 0. If $f + i > 1$ (with $f < 1$) the origin is a
# *source*: the state is released towards a nonzero fixed point $x^*$ with
# $(1 - f)x^* = i \tanh(x^*)$. The cell below iterates `cobweb(cell_state_map, ...)` for 60 steps
# for three gate settings and prints where each run ends and the slope $T'$ there (below 1 in
# absolute value means the end point is an attracting fixed point).

# %%
for forget, input_gate in ((0.25, 0.15), (0.9, 1.0), (0.5, 0.75)):
    gates = (jnp.asarray(forget), jnp.asarray(input_gate))
    web = cobweb(lambda x, gates=gates: cell_state_map(x, gates), 0.5, 60)
    end = float(web.iterates[-1])
    slope = forget + input_gate * (1.0 - np.tanh(end) ** 2)
    print(
        f"f = {forget:4.2f}, i = {input_gate:4.2f}:  T'(0) = {forget + input_gate:4.2f},  "
        f"x_60 = {end:.6f},  T'(x_60) = {slope:.4f}"
    )

# %% [markdown]
# The package's `cobweb` experiment draws the paper's Figs. 1, 2 and 5. Top row: a sink
# ($T(x) = 0.5x$, the "catch" regime) and a source ($T(x) = \tanh(3x)$, "release"), then the
# linear sink and source of Fig. 5. Below, Fig. 2's three rows of the cell-state map for
# $t = 1, 2, 3$: dashed is $y = x$, solid is $T_t$, dot-dashed the previous step's map, and the
# dotted zig-zag is the trajectory from the rhombus ($x_0$) to the circle ($x_t$). In the first
# row the unregulated LSTM's gates change from step to step and so does the map; with a constant
# large forget gate (second row) the maps differ only through the input gate; with a small one
# (third row) the state is pulled back towards the origin at every step.

# %%
cobwebs = cobweb_experiment.run(cobweb_experiment.Config(), out_dir=None)
for row in cobwebs["figure2"]:
    iterates = ", ".join(f"{x:.3f}" for x in np.asarray(row["iterates"]))
    print(f"{row['label']}: x_0..x_3 = {iterates}")
cobweb_figure(cobwebs)
plt.show()

# %% [markdown]
# ## DecayNet's monotone forget gate
#
# An LSTM's forget gate $f_t = \sigma(\cdot)$ can rise and fall freely, so the cell state can move
# between the catch and release regimes at every step. DecayNet (System 2) replaces it by a
# *forget polar* $p_t$ that starts at $p_0 = \pi/2$ and only loses
# $\frac{\pi}{2D} \cdot \frac{z_t + 3}{6}$ per step ($z_t$ the forget pre-activation, $D$ the
# sequence length), with $f_t = \sin(\mathrm{clip}(p_t, 0, \pi/2))$. For $z_t \in [-3, 3]$ the
# decrement is non-negative, so $f_t$ never increases and reaches at most $\pi/2$ below its start
# after $D$ steps. The paper's formula allows increases when $z_t < -3$;
# `clip_decrement=True` clips the rate to $[0, 1]$ and makes the decay monotone for any input.
#
# We run an untrained LSTM cell and both DecayNet variants (same weights: the same key) on one
# random sequence of $D = 28$ steps and count, over all units and steps, how often $f_t$ goes up.

# %%
sequence_length, input_size, hidden_size = 28, 4, 8
key_cell, key_inputs = jax.random.split(jax.random.key(0))
inputs = jax.random.normal(key_inputs, (sequence_length, input_size))
cells = {
    "LSTM": LSTMCell(input_size, hidden_size, key=key_cell),
    "DecayNet (paper decrement)": DecayCell(
        input_size, hidden_size, sequence_length=sequence_length, key=key_cell
    ),
    "DecayNet (clipped decrement)": DecayCell(
        input_size, hidden_size, sequence_length=sequence_length, clip_decrement=True, key=key_cell
    ),
}
traces = {}
for name, cell in cells.items():
    _, trajectory = cell.scan(inputs)
    forget = np.asarray(trajectory.f)
    traces[name] = forget
    increases = int(count_increases(trajectory.f))
    possible = forget.size - hidden_size
    print(f"{name}: forget-gate increases {increases} of {possible} unit-steps")

# %% [markdown]
# The traces of $f_t$ for every unit. The LSTM's gates move up and down; DecayNet's start at
# $\sin(p_1) \approx 1$ and bend downwards. With the paper's decrement, units whose pre-activation
# drops below $-3$ can tick up (the count printed above); with the clipped decrement every trace is
# non-increasing.

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), sharey=True, layout="constrained")
steps = np.arange(1, sequence_length + 1)
for ax, (name, forget) in zip(axes, traces.items(), strict=True):
    ax.plot(steps, forget, lw=1.2)
    ax.set(title=name, xlabel="t", ylim=(-0.05, 1.05))
axes[0].set_ylabel("forget gate f_t (one line per unit)")
plt.show()

# %% [markdown]
# ## Table 2: LSTM versus DecayNet on row-by-row MNIST
#
# Each 28 × 28 image is read as a sequence of 28 rows of 28 pixels: one row per time step, the
# class read from the last hidden state. This is what one training example looks like.

# %%
train_split, _ = load("mnist")
fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(train_split.images[0], cmap="gray_r")
ax.set(title=f"label {train_split.labels[0]}: 28 steps × 28 inputs", xlabel="input", ylabel="t")
plt.show()

# %% [markdown]
# `table2.run` trains every seed of a model at once (one `vmap`) with Adam (lr 0.01, batch 64)
# and reports the test accuracy per seed, with Welch's t-test between each LSTM and the DecayNet
# that follows it. It writes resumable checkpoints, so we give it a temporary directory that is
# deleted afterwards.
#
# The small mode trains 3 seeds per model on the first 6,400 training images (100 steps, a ninth
# of the paper's epoch) and tests on the first 1,000 test images, for the MNIST pair with 32 hidden
# units only. Its accuracies are therefore far below the paper's (which are after a full epoch),
# and with 3 seeds the t-test has little power: treat the small-mode comparison as a smoke test of
# the pipeline, not as evidence either way. The full mode runs the paper's six models with 20
# seeds on the full data (about 7 minutes on 2 CPU cores; the README lists our full results).

# %%
config = table2.Config()
if SMALL:
    config = dataclasses.replace(
        config,
        models=("mnist/lstm/32", "mnist/decay/32"),
        seeds=3,
        train_subset=6_400,
        test_subset=1_000,
    )
with tempfile.TemporaryDirectory() as scratch:
    comparison = table2.run(config, scratch)
for row in comparison["rows"]:
    accuracies = ", ".join(f"{a:.2f}" for a in row["accuracies"])
    paper = "mean ± sd (best) {:.1f} ± {:.1f} ({:.1f})".format(*row["paper"])
    print(
        f"{row['dataset']} {row['model']}-{row['hidden']} ({row['params']:,} params, "
        f"{row['steps']} steps): test accuracy {row['mean']:.2f} ± {row['std']:.2f} "
        f"(best {row['best']:.2f}) [{accuracies}];  paper {paper}"
    )
for test in comparison["tests"]:
    print(
        f"{test['dataset']} {' vs '.join(test['pair'])}: Welch's t-test p = {test['p_value']:.6g}"
    )

# %% [markdown]
# The paper's Fig. 7 view of the same numbers: the test accuracy of every seed as a violin and box
# plot per model (yellow LSTM, purple DecayNet). The spread across seeds is as informative as the
# means: with few seeds and little training the boxes overlap widely.

# %%
table2_figure(comparison)
plt.show()

# %% [markdown]
# ## Summary
#
# - The cell-state update is a scalar map per unit; its slope at the origin, $f + i$, decides
#   whether a state is caught (sink) or released to a nonzero fixed point (source).
# - An LSTM's forget gate is free to rise and fall; DecayNet's forget polar makes it decay from 1,
#   monotonically for pre-activations in $[-3, 3]$ and for any input with the clipped decrement.
# - Both networks have exactly the same parameters; the printed table compares their accuracies.
#   The full mode reproduces the paper's Table 2 setting.
