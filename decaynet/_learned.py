"""LSTMs as optimisers (§6.2, App. D–E): learned per-parameter learning rates, as Optax transforms.

The optimiser network reads `θ_{t-1} ⊙ G_{t-1}` over all `r_H` optimisee parameters (flattened with
`ravel_pytree`), projects it down to 28 inputs, runs a gated cell (LSTM or DecayNet) of 64 hidden
units with layer norm on `W x` and on `W_R q` (App. D, `LayerNormalisation`, through `scan_cell`),
and projects the hidden state `q` up to `u = W_up q`, which a strategy object passed as `rates`
(`AbstractRates`) turns into the learning rates `α_t ∈ R^{r_H}`: `LinearRates()`, the paper's
`α_t = u`, or `SoftplusRates()`, `α_t = log(1 + e^u)`; the optimisee then takes
`θ_t = θ_{t-1} − α_t ⊙ ∇θ L`. At every update the cell's forget polar (if it has one)
restarts from its initial value and the cell runs `internal_steps` steps on the same input before
emitting `α_t`: the paper's DecayNet optimiser takes 2, so its forget gate decays from 1 within
each update; the LSTM optimiser takes 1.

`learned_optimizer(net)` exposes a network as an `optax.GradientTransformation` (its state is the
cell state); `rollout` runs any transformation on an optimisee, and `meta_train` trains the network
as Andrychowicz et al. (2016) do: an Optax optimiser (Adam by default) on the summed loss
improvements of truncated unrolls, with the optimisee gradient treated as a constant (first
order).

The optimisee is the MLP 784-20-10 of App. D with `U(−0.1, 0.1)` weights and zero biases. Its hidden
activation is not stated in the paper; we use Andrychowicz et al.'s sigmoid.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

from decaynet._cells import AbstractGatedCell, CellState, build_cell, scan_cell
from decaynet._initialisation import PyTorchInit
from decaynet._normalisation import LayerNormalisation
from memdyn import AbstractNonFinitePolicy, NonFiniteStep, Stop, run_chunks
from memdyn.internal import (
    check_optimizer,
    check_positive,
    check_strategy,
    progress,
    tree_all_finite,
)

PREPROCESSING_P = 10.0
MLP_SIZES = (784, 20, 10)

LossFn = Callable[[PyTree, Array, Array], Float[Array, ""]]


def preprocess_gradient(
    gradient: Float[Array, "*shape"], p: float = PREPROCESSING_P
) -> Float[Array, "*shape"]:
    """`G`: the product of Andrychowicz et al.'s two preprocessed parts (App. E).

    `(log|∇| / p) · sgn(∇)` if `|∇| ≥ e^{−p}`, else `−e^p ∇`.
    """
    magnitude = jnp.abs(gradient)
    large = magnitude >= math.exp(-p)
    safe = jnp.where(large, magnitude, 1.0)  # keeps log (and its gradient) finite on both branches
    return jnp.where(large, jnp.log(safe) / p * jnp.sign(gradient), -math.exp(p) * gradient)


class AbstractRates(eqx.Module):
    """How the optimiser network's up-projection `u = W_up q` becomes the learning rates `α_t`;
    pass an instance as `rates` to `LearnedOptimizer`. A new one is a subclass with
    `__call__`."""

    @abc.abstractmethod
    def __call__(self, u: Float[Array, " parameters"]) -> Float[Array, " parameters"]:
        """`α_t` from `u`, entry by entry."""


class LinearRates(AbstractRates):
    """The paper's `α_t = u` (App. D), whose entries take either sign: a negative one is gradient
    *ascent* on its parameter."""

    def __call__(self, u):
        return u


class SoftplusRates(AbstractRates):
    """`α_t = log(1 + e^u)`, non-negative, so `−α_t ⊙ ∇` is always a descent direction (a step
    along it lowers the loss to first order)."""

    def __call__(self, u):
        return jax.nn.softplus(u)


class LearnedOptimizer(eqx.Module):
    """The optimiser network of §6.2: `α_t, (q, s)_t = Net(θ_{t-1} ⊙ G_{t-1}, (q, s)_{t-1})`.

    `cell` is a cell class, built with PyTorch's initialisation for sequences of `internal_steps`
    steps (`D = internal_steps` in DecayNet's polar decrement) and the extra `cell_options`. The
    paper's DecayNet optimiser is `LearnedOptimizer(DecayCell, n, internal_steps=2,
    clip_decrement=True, key=key)`: layer-normalised pre-activations can leave the paper's
    assumed `[−3, 3]`, and the clip keeps `f` non-increasing.

    `rates` (an `AbstractRates`) maps the up-projection `u = W_up q` to `α_t`: `LinearRates()`
    (the default) is the paper's `α_t = u` (App. D), whose entries take either sign: a negative
    one is gradient *ascent* on its parameter. `SoftplusRates()` is `α_t = log(1 + e^u)`,
    non-negative, so `−α_t ⊙ ∇` is always a descent direction (a step along it lowers the loss
    to first order). A name such as `"softplus"` raises `TypeError`.
    """

    down: eqx.nn.Linear
    cell: AbstractGatedCell
    normalisation: LayerNormalisation
    up: eqx.nn.Linear
    internal_steps: int = eqx.field(static=True)
    rates: AbstractRates

    def __init__(
        self,
        cell: type[AbstractGatedCell],
        num_parameters: int,
        *,
        projection: int = 28,
        hidden: int = 64,
        internal_steps: int = 1,
        rates: AbstractRates = LinearRates(),  # noqa: B008 (immutable, as Diffrax does)
        key: PRNGKeyArray,
        **cell_options,
    ):
        check_strategy("rates", rates, AbstractRates, "LinearRates() or SoftplusRates()")
        check_positive("num_parameters", num_parameters)
        check_positive("projection", projection)
        check_positive("hidden", hidden)
        check_positive("internal_steps", internal_steps)
        down_key, cell_key, up_key = jax.random.split(key, 3)
        self.internal_steps = internal_steps
        self.rates = rates
        self.down = eqx.nn.Linear(num_parameters, projection, use_bias=False, key=down_key)
        self.cell = build_cell(
            cell,
            projection,
            hidden,
            sequence_length=internal_steps,
            init=PyTorchInit(),
            key=cell_key,
            **cell_options,
        )
        self.normalisation = LayerNormalisation(hidden)
        self.up = eqx.nn.Linear(hidden, num_parameters, use_bias=False, key=up_key)

    @property
    def num_parameters(self) -> int:
        return self.up.out_features

    def initial_state(self) -> CellState:
        """`q = s = 0` (and `p = π/2` for DecayNet, though it is reset at every update)."""
        return self.cell.initial_carry()

    def __call__(
        self,
        theta: Float[Array, " parameters"],
        gradient: Float[Array, " parameters"],
        state: CellState,
    ) -> tuple[Float[Array, " parameters"], CellState, Float[Array, "internal_steps hidden"]]:
        """Learning rates `α_t`, the next state, and the forget gates of the internal steps."""
        x = self.down(theta * preprocess_gradient(gradient))
        xs = jnp.broadcast_to(x, (self.internal_steps, x.shape[0]))
        restarted = state._replace(p=self.cell.initial_carry().p)
        one = functools.partial(jax.tree.map, lambda a: a[None])  # a batch of one sequence
        state, trajectory, _ = scan_cell(
            self.cell, self.normalisation, xs[None], initial=one(restarted)
        )
        state, trajectory = jax.tree.map(lambda a: a[0], (state, trajectory))
        return self.rates(self.up(state.q)), state, trajectory.f


class _Transformation(eqx.Module):
    """`init`/`update` as bound methods of a Module, so the transformation is a pytree of the
    network's arrays: `eqx.filter_jit` traces them instead of baking them in as constants."""

    net: LearnedOptimizer

    def init(self, params: PyTree) -> CellState:
        del params
        return self.net.initial_state()

    def update(
        self, updates: PyTree, state: CellState, params: PyTree | None = None
    ) -> tuple[PyTree, CellState]:
        if params is None:
            raise ValueError(
                "learned_optimizer's update needs params: its input is θ ⊙ G, so call "
                "update(grads, state, params)"
            )
        gradient, unravel = ravel_pytree(updates)
        theta, _ = ravel_pytree(params)
        if gradient.shape != (self.net.num_parameters,) or theta.shape != gradient.shape:
            raise ValueError(
                f"params and grads must hold num_parameters = {self.net.num_parameters} entries; "
                f"got {theta.shape[0]} and {gradient.shape[0]}"
            )
        alpha, state, _ = self.net(theta, gradient, state)
        return unravel(-alpha * gradient), state


def learned_optimizer(net: LearnedOptimizer) -> optax.GradientTransformation:
    """The network as an Optax transformation: `update(grads, state, params)` returns
    `−α_t ⊙ grads` (same pytree as `grads`), so `optax.apply_updates` gives `θ_t`."""
    transformation = _Transformation(net)
    return optax.GradientTransformation(transformation.init, transformation.update)


def init_mlp(key: PRNGKeyArray, sizes: Sequence[int] = MLP_SIZES) -> list[dict[str, Array]]:
    """The optimisee of App. D: weights `U(−0.1, 0.1)`, biases zero."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {
            "weight": jax.random.uniform(k, (m, n), minval=-0.1, maxval=0.1),
            "bias": jnp.zeros(n),
        }
        for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def mlp_parameter_count(sizes: Sequence[int] = MLP_SIZES) -> int:
    """Weights and biases of `init_mlp(·, sizes)`: r_H = 15,910 for 784-20-10."""
    return sum((m + 1) * n for m, n in zip(sizes[:-1], sizes[1:], strict=True))


def mlp_loss(
    params: list[dict[str, Array]],
    images: Float[Array, "batch input"],
    labels: Int[Array, " batch"],
) -> Float[Array, ""]:
    """Mean cross-entropy of the sigmoid MLP with a softmax output layer."""
    h = images
    for layer in params[:-1]:
        h = jax.nn.sigmoid(h @ layer["weight"] + layer["bias"])
    logits = h @ params[-1]["weight"] + params[-1]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def rollout(
    optimizer: optax.GradientTransformation,
    params: PyTree,
    state: Any,
    images: Float[Array, "examples input"],
    labels: Int[Array, " examples"],
    *,
    key: PRNGKeyArray,
    updates: int,
    batch_size: int = 32,
    loss_fn: LossFn = mlp_loss,
) -> tuple[tuple[PyTree, Any], tuple[Float[Array, " updates"], Float[Array, " updates"]]]:
    """`updates` steps of `optimizer` on one optimisee, one `lax.scan`.

    Step `t` draws minibatch `b_t` (keyed by `key`, with replacement) and returns the losses
    `L(θ_{t-1}; b_t)` and `L(θ_t; b_t)`. `∇θ L` is under `stop_gradient` (first order), and so is
    `L(θ_{t-1}; b_t)`: a meta-loss `Σ_t L(θ_t; b_t) − L(θ_{t-1}; b_t)` differentiated through the
    "before" terms would reward raising `L(θ_t; b_{t+1})`, the next step's starting loss (we saw
    learned optimisers diverge that way); with it constant the meta-gradient is that of
    Andrychowicz et al.'s `Σ_t L(θ_t)`, while the meta-loss keeps the paper's value.
    """

    def step(carry, key):
        params, state = carry
        index = jax.random.randint(key, (batch_size,), 0, images.shape[0])
        x, y = images[index], labels[index]
        before, grads = jax.lax.stop_gradient(jax.value_and_grad(loss_fn)(params, x, y))
        step_updates, state = optimizer.update(grads, state, params)
        params = optax.apply_updates(params, step_updates)
        return (params, state), (before, loss_fn(params, x, y))

    return jax.lax.scan(step, (params, state), jax.random.split(key, updates))


def loss_curves(
    optimizer: optax.GradientTransformation,
    images: Float[Array, "examples input"],
    labels: Int[Array, " examples"],
    *,
    key: PRNGKeyArray,
    optimisees: int,
    updates: int = 100,
    batch_size: int = 32,
    sizes: Sequence[int] = MLP_SIZES,
) -> Float[Array, "optimisees updates_plus_one"]:
    """`L(θ_t; b_{t+1})` for `t = 0..updates` on `optimisees` fresh MLPs (vmapped): each entry is
    the loss on a minibatch the optimisee has not yet been updated on."""
    params, data_keys = _fresh_optimisees(key, optimisees=optimisees, sizes=tuple(sizes))
    return _loss_curves(optimizer, images, labels, params, data_keys, updates=updates,
                        batch_size=batch_size)  # fmt: skip


@functools.partial(jax.jit, static_argnames=("optimisees", "sizes"))
def _fresh_optimisees(key, *, optimisees, sizes):
    """`loss_curves`' optimisees and their data keys (`key` split into the initialisation and
    data keys), in a program of their own: every optimiser evaluated from one key shares it, and
    the optimisers' programs do not each compile the initialisation again."""
    init_key, data_key = jax.random.split(key)
    params = jax.vmap(lambda k: init_mlp(k, sizes))(jax.random.split(init_key, optimisees))
    return params, jax.random.split(data_key, optimisees)


@eqx.filter_jit
def _loss_curves(optimizer, images, labels, params, data_keys, *, updates, batch_size):
    """`loss_curves` with the optimiser an argument, so a learned one's arrays are traced."""

    def one(params, data_key):
        _, (before, _) = rollout(
            optimizer, params, optimizer.init(params), images, labels,
            key=data_key, updates=updates + 1, batch_size=batch_size,
        )  # fmt: skip
        return before

    return jax.vmap(one)(params, data_keys)


@eqx.filter_jit
def _truncation(net, opt_state, params, state, keys, images, labels, *, meta_optimizer, length,
                batch_size, loss_fn):  # fmt: skip
    """One truncation for all optimisees and one step of `meta_optimizer` (`meta_train`'s
    `optimizer`: Adam unless another is given) on the network."""

    def meta_loss(net):
        optimizer = learned_optimizer(net)

        def one(params, state, key):
            carry, (before, after) = rollout(
                optimizer, params, state, images, labels,
                key=key, updates=length, batch_size=batch_size, loss_fn=loss_fn,
            )  # fmt: skip
            return jnp.sum(after - before), carry

        improvements, carry = jax.vmap(one)(params, state, keys)
        return improvements.mean(), carry

    (loss, (params, state)), grads = eqx.filter_value_and_grad(meta_loss, has_aux=True)(net)
    finite = jnp.isfinite(loss) & tree_all_finite(grads)
    step_updates, opt_state = meta_optimizer.update(grads, opt_state, eqx.filter(net, eqx.is_array))
    net = eqx.apply_updates(net, step_updates)
    return net, opt_state, jax.lax.stop_gradient((params, state)), loss, finite


def meta_train(
    net: LearnedOptimizer,
    images: Float[Array, "examples input"],
    labels: Int[Array, " examples"],
    *,
    key: PRNGKeyArray,
    meta_iterations: int,
    optimisees: int = 5,
    updates: int = 100,
    truncation: int = 20,
    batch_size: int = 32,
    optimizer: optax.GradientTransformation = optax.adam(1e-3),  # noqa: B008 (immutable)
    init_fn: Callable[[PRNGKeyArray], PyTree] = init_mlp,
    loss_fn: LossFn = mlp_loss,
    policy: AbstractNonFinitePolicy = Stop(),  # noqa: B008 (immutable, as Diffrax does)
) -> tuple[LearnedOptimizer, Float[Array, "meta_iterations truncations"]]:
    """Meta-training of App. D (Andrychowicz et al., 2016): `optimizer`, an Optax transformation
    of the network's parameters (Adam with step 1e-3, the paper's, by default), on the meta-loss.

    Each meta-iteration draws `optimisees` fresh optimisees from `init_fn`, unrolls `updates`
    updates in truncations of `truncation`; the meta-loss of a truncation is the sum over its
    updates of `L(θ_t; b_t) − L(θ_{t-1}; b_t)` (mean over optimisees), and each truncation takes
    one step of `optimizer`, a step of `memdyn.run_chunks`. Returns the trained network and the
    meta-losses. A non-finite meta-loss or meta-gradient goes to `policy`: `memdyn.Stop()`, the
    default, raises `memdyn.TrainingStopped` naming the meta-iteration and truncation (its
    `step` counts truncations from 0); `memdyn.Freeze()` returns the last good network, the one
    the truncation before the failed one started from (`memdyn.run_chunks`), with the
    meta-losses of the failed and later truncations NaN.
    """
    for name, value in (
        ("meta_iterations", meta_iterations),
        ("optimisees", optimisees),
        ("updates", updates),
        ("truncation", truncation),
        ("batch_size", batch_size),
    ):
        check_positive(name, value)
    check_optimizer(optimizer)
    if updates % truncation:
        raise ValueError(f"updates ({updates}) must be a multiple of truncation ({truncation})")
    truncations = updates // truncation
    opt_state = optimizer.init(eqx.filter(net, eqx.is_array))
    initial = jax.tree.map(
        lambda x: jnp.broadcast_to(x, (optimisees, *x.shape)), net.initial_state()
    )
    losses = []  # every truncation's meta-loss, in order
    desc = f"meta-train {net.cell.label} optimiser"

    def chunks():
        # One chunk per truncation, each a step of one run: its optimisee keys, and (at a
        # meta-iteration's first truncation) the key of fresh optimisees.
        for iteration_key in jax.random.split(key, meta_iterations):
            init_key, data_key = jax.random.split(iteration_key)
            for index, truncation_key in enumerate(jax.random.split(data_key, truncations)):
                keys = jax.random.split(truncation_key, optimisees)
                yield init_key[None], keys[None], jnp.asarray([index == 0])

    def advance(carry, chunk):
        net, opt_state, params, state = carry
        init_key, keys, fresh = chunk
        if bool(fresh[0]):
            params = jax.vmap(init_fn)(jax.random.split(init_key[0], optimisees))
            state = initial
        net, opt_state, (params, state), loss, finite = _truncation(
            net, opt_state, params, state, keys[0], images, labels,
            meta_optimizer=optimizer, length=truncation, batch_size=batch_size, loss_fn=loss_fn,
        )  # fmt: skip
        return (net, opt_state, params, state), loss[None], finite[None]

    def message(failure: NonFiniteStep) -> str:
        iteration, index = divmod(failure.step, truncations)
        return (
            f"{desc}: non-finite meta-loss or meta-gradient at meta-iteration {iteration + 1} of "
            f"{meta_iterations}, truncation {index + 1}; meta-training stopped. Lower "
            "the optimizer's learning rate or use rates=SoftplusRates()"
        )

    def record(carry, loss, steps) -> bool:
        losses.append(loss[0])
        return False

    total = meta_iterations * truncations
    (net, *_), _ = run_chunks(
        advance, (net, opt_state, None, None), progress(chunks(), desc=desc, total=total),
        policy=policy, message=message, after_chunk=record,
    )  # fmt: skip
    dtype = losses[0].dtype if losses else jnp.result_type(float)
    losses += [jnp.full((), jnp.nan, dtype)] * (total - len(losses))  # a frozen run's rest
    return net, jnp.stack(losses).reshape(meta_iterations, truncations)
