"""Curvature operators: the Hessian, the generalised Gauss–Newton matrix, the true Fisher and the
empirical Fisher of any loss of any model, as matrix-free symmetric operators on the flat vector
of a chosen block of the model's arrays (all of them, one layer, the recurrent weights only).

An operator is an `eqx.Module` (a pytree callable, in the spirit of lineax's
`FunctionLinearOperator`): `op.mv(v)` or `op(v)` is the product, `op.size` the dimension,
`op.as_matrix()` the dense matrix for small blocks. The estimators take any operator, or any
symmetric matvec: `lanczos` (Ritz values and vectors), `memdyn.spectral_density` (SLQ),
`hutchinson_trace`-style probes and `hutchpp_trace`.

Where the loss is a mean over data, pass `data` with a leading axis of equal-sized batches: the
product is then the mean of the per-batch products, accumulated in a `lax.scan`, so only one
batch's activations are ever held (the operator of the whole dataset, streamed).

Blocks are Equinox filter specs (as `eqx.partition` takes), intersected with the floating-point
arrays; `block(model, where)` builds one from an `eqx.tree_at`-style `where`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, PyTree

from memdyn._likelihood import AbstractLikelihood, sampled_fisher_mv
from memdyn._parameters import check_model, check_scalar_loss

FilterSpec = Any  # a bool, a callable leaf -> bool, or a pytree prefix of those (eqx.partition)


def block(model: PyTree, where: Callable[[PyTree], Any]) -> PyTree:
    """The filter spec that chooses the arrays under `where(model)` (a node or a tuple of nodes,
    as `eqx.tree_at`'s `where`): e.g. `block(gru, lambda m: m.weight_recurrent)`."""
    unchosen = jax.tree.map(lambda _: False, model)
    return eqx.tree_at(where, unchosen, replace_fn=lambda node: jax.tree.map(lambda _: True, node))


def split_block(model: PyTree, spec: FilterSpec) -> tuple[PyTree, PyTree]:
    """`(chosen, rest)`: the floating-point arrays `spec` chooses, and everything else."""
    chosen, rest = eqx.partition(model, spec)
    chosen, unchosen = eqx.partition(chosen, eqx.is_inexact_array)
    if not jax.tree.leaves(chosen):
        raise ValueError("block chooses no floating-point array of the model")
    return chosen, eqx.combine(rest, unchosen)


def _mean_over_batches(product: Callable, data: PyTree | None, vector: Array) -> Array:
    """`product(vector, batch)` averaged over `data`'s leading batch axis in a `lax.scan`, or
    `product(vector)` without data."""
    if data is None:
        return product(vector)

    def add(total, batch):
        return total + product(vector, batch), None

    total, _ = jax.lax.scan(add, jnp.zeros_like(vector), data)
    return total / jax.tree.leaves(data)[0].shape[0]


def _first_batch(data: PyTree | None) -> tuple:
    """The arguments a loss gets with one batch of `data` (none without data), after checking
    that `data` has one leading batch axis, the same on every leaf: for the shape checks."""
    if data is None:
        return ()
    sizes = {getattr(leaf, "shape", (None,))[:1] for leaf in jax.tree.leaves(data)}
    if len(sizes) != 1 or () in sizes or (None,) in sizes:
        raise ValueError(
            "data must be arrays with one leading axis of batches, the same on every leaf; got "
            f"leading sizes {sorted(sizes, key=str)}"
        )
    return (jax.tree.map(lambda x: x[0], data),)


def _jacobian_sandwich(
    function: Callable[[PyTree], PyTree],
    parameters: PyTree,
    tangent: PyTree,
    middle: Callable[[PyTree, PyTree], PyTree],
) -> PyTree:
    """Jᵀ M (J v), J the Jacobian of `function` at `parameters` and `middle(outputs, J v)` the
    product with M at the outputs, from one forward pass (`jax.linearize`, transposed for Jᵀ):
    the shape the Gauss–Newton matrix and both Fishers share."""
    outputs, forward = jax.linearize(function, parameters)
    (pulled,) = jax.linear_transpose(forward, parameters)(middle(outputs, forward(tangent)))
    return pulled


class AbstractCurvature(eqx.Module):
    """A symmetric linear operator on the flat vector (`jax.flatten_util.ravel_pytree` order) of
    the chosen block of a model's floating-point arrays.

    Subclasses hold the block (`parameters`), the rest of the model (`rest`) and implement `mv`.
    """

    parameters: PyTree
    rest: PyTree

    @abc.abstractmethod
    def mv(self, vector: Float[Array, " n"]) -> Float[Array, " n"]:
        """The product of the operator with `vector`."""

    def __call__(self, vector: Float[Array, " n"]) -> Float[Array, " n"]:
        return self.mv(vector)

    @property
    def size(self) -> int:
        """n, the number of floating-point scalars in the block."""
        return sum(leaf.size for leaf in jax.tree.leaves(self.parameters))

    @property
    def dtype(self):
        return jnp.result_type(*jax.tree.leaves(self.parameters))

    def model(self, parameters: PyTree | None = None) -> PyTree:
        """The whole model, with `parameters` (default: the operator's own) as its block."""
        return eqx.combine(self.parameters if parameters is None else parameters, self.rest)

    def unravel(self, vector: Float[Array, " n"]) -> PyTree:
        """A flat vector as a pytree of the block's structure (a tangent of the block)."""
        return ravel_pytree(self.parameters)[1](vector)

    def as_matrix(self) -> Float[Array, "n n"]:
        """The dense n × n matrix, column j the product with e_j: for small blocks and tests."""
        return _dense(self)


@eqx.filter_jit
def _dense(operator: AbstractCurvature) -> Float[Array, "n n"]:
    """`operator.as_matrix()`, one compiled program: run eagerly, the vmapped product compiles
    each of its operations on its own."""
    eye = jnp.eye(operator.size, dtype=operator.dtype)
    return jax.vmap(operator.mv, out_axes=1)(eye)


def _ravel(tree: PyTree) -> Array:
    return ravel_pytree(tree)[0]


def hessian_product(
    loss_fn: Callable[[PyTree], Float[Array, ""]], parameters: PyTree, rest: PyTree, tangent: PyTree
) -> PyTree:
    """∇²J v over `parameters` (the rest of the model held fixed) as the `jvp` of `grad`
    (forward-over-reverse): the one Hessian product that `HessianOperator` and `memdyn.hvp`
    share."""
    gradient = jax.grad(lambda p: loss_fn(eqx.combine(p, rest)))
    return jax.jvp(gradient, (parameters,), (tangent,))[1]


class HessianOperator(AbstractCurvature):
    """∇²J over the block, v ↦ the `jvp` of `grad` (forward-over-reverse): one gradient's cost.

    `loss_fn(model)` is a real scalar; with `data`, `loss_fn(model, batch)` and the operator is
    the mean of the batches' Hessians.
    """

    loss_fn: Callable
    data: PyTree | None

    def __init__(self, loss_fn, model, *, block: FilterSpec = True, data=None):
        check_scalar_loss(loss_fn, check_model(model), *_first_batch(data))
        self.parameters, self.rest = split_block(model, block)
        self.loss_fn, self.data = loss_fn, data

    def mv(self, vector):
        def product(v, *batch):
            loss = lambda model: self.loss_fn(model, *batch)
            return _ravel(hessian_product(loss, self.parameters, self.rest, self.unravel(v)))

        return _mean_over_batches(product, self.data, vector)


class GaussNewtonOperator(AbstractCurvature):
    """The generalised Gauss–Newton matrix Jᵀ H_ℓ J of a loss written as a prediction plus a
    loss of it, ℓ(f(θ)): J the Jacobian of the predictions with respect to the block, H_ℓ the
    Hessian of ℓ with respect to the predictions. Positive semi-definite where ℓ is convex; for
    a negative log-likelihood with its canonical link (squared error, softmax cross-entropy) it
    is also the true Fisher information.

    `predict_fn(model)` returns the predictions (any pytree of arrays) and
    `output_loss(predictions)` a real scalar; with `data`, `predict_fn(model, batch)` and
    `output_loss(predictions, batch)`, averaged over the batches.
    """

    predict_fn: Callable
    output_loss: Callable
    data: PyTree | None

    def __init__(self, predict_fn, output_loss, model, *, block: FilterSpec = True, data=None):
        args = _first_batch(data)
        predictions = eqx.filter_eval_shape(predict_fn, check_model(model), *args)
        check_scalar_loss(output_loss, predictions, *args)
        self.parameters, self.rest = split_block(model, block)
        self.predict_fn, self.output_loss, self.data = predict_fn, output_loss, data

    def mv(self, vector):
        def product(v, *batch):
            predict = lambda p: self.predict_fn(self.model(p), *batch)
            output_gradient = jax.grad(lambda y: self.output_loss(y, *batch))
            curve = lambda y, u: jax.jvp(output_gradient, (y,), (u,))[1]  # H_ℓ u
            return _ravel(_jacobian_sandwich(predict, self.parameters, self.unravel(v), curve))

        return _mean_over_batches(product, self.data, vector)


class EmpiricalFisherOperator(AbstractCurvature):
    """The empirical Fisher (1/N) Σᵢ gᵢ gᵢᵀ, gᵢ the gradient of example i's loss with respect to
    the block: v ↦ (1/N) Jᵀ (J v), J the Jacobian of the N per-example losses, without forming
    per-example gradients.

    `example_loss(model, example)` is example i's real scalar loss; `data` holds the examples on
    its leading axis, or batches of them on two leading axes with `batched=True` (streamed: one
    batch at a time).
    """

    example_loss: Callable
    data: PyTree
    batched: bool = eqx.field(static=True)

    def __init__(self, example_loss, model, data, *, block: FilterSpec = True, batched=False):
        (first,) = _first_batch(data)  # a batch with `batched`, else an example
        (example,) = _first_batch(first) if batched else (first,)
        check_scalar_loss(example_loss, check_model(model), example)
        self.parameters, self.rest = split_block(model, block)
        self.example_loss, self.data, self.batched = example_loss, data, batched

    def _product(self, vector, examples):
        losses = lambda p: jax.vmap(lambda x: self.example_loss(self.model(p), x))(examples)
        mean = lambda per_example, u: u / per_example.shape[0]  # M = I / N
        return _ravel(_jacobian_sandwich(losses, self.parameters, self.unravel(vector), mean))

    def mv(self, vector):
        if not self.batched:
            return self._product(vector, self.data)
        return _mean_over_batches(self._product, self.data, vector)


def _examples(predictions: PyTree) -> int:
    """N, the leading example axis every leaf of the predictions shares (`ValueError` else)."""
    sizes = {tuple(leaf.shape[:1]) for leaf in jax.tree.leaves(predictions)}
    if len(sizes) != 1 or () in sizes:
        raise ValueError(
            "predict_fn must return predictions with one leading example axis, the same on every "
            f"leaf; got leading sizes {sorted(sizes)}"
        )
    return sizes.pop()[0]


class FisherOperator(AbstractCurvature):
    """The true Fisher information of a likelihood p(y | f(x; θ)) over the block,

        F = (1/N) Σᵢ E_{y ~ p(·|fᵢ)} [∇_θ log p(y|fᵢ) ∇_θ log p(y|fᵢ)ᵀ] = (1/N) Σᵢ Jᵢᵀ F_{fᵢ} Jᵢ,

    Jᵢ the Jacobian of example i's prediction fᵢ and F_f the likelihood's output Fisher
    (`AbstractLikelihood.output_fisher_mv`): the Gauss–Newton product of
    `GaussNewtonOperator` with F_f in place of the loss's Hessian, so it never reads labels.
    It equals the Gauss–Newton matrix of −log p for a canonical link (`Categorical`,
    `Gaussian`) and differs from it otherwise (`Bernoulli` with a probit link).

    `predict_fn(model)` returns the N examples' predictions (any pytree of arrays, leading axis
    the examples); `likelihood` acts on one example's. With `data`, `predict_fn(model, batch)`
    and the operator is streamed over the batches (their mean, one batch held at a time).

    Exact by default. With `samples=S` and `key`, the Monte Carlo Fisher: F_f replaced by
    (1/S) Σₛ gₛ gₛᵀ, gₛ = ∇_f log p(yₛ|f) for S labels yₛ ~ p(·|fᵢ) per example, drawn with
    `key` and so the same in every product (a fixed symmetric positive semi-definite operator,
    unbiased for F, error ∝ 1/√S; it needs only `log_prob` and `sample`).
    """

    predict_fn: Callable
    likelihood: AbstractLikelihood
    data: PyTree | None
    samples: int | None = eqx.field(static=True)
    key: jax.Array | None

    def __init__(
        self,
        predict_fn,
        likelihood: AbstractLikelihood,
        model,
        *,
        block: FilterSpec = True,
        data=None,
        samples: int | None = None,
        key: jax.Array | None = None,
    ):
        if not isinstance(likelihood, AbstractLikelihood):
            raise TypeError(
                f"likelihood must be a memdyn.AbstractLikelihood; got {type(likelihood).__name__}"
            )
        if samples is not None and key is None:
            raise ValueError(f"samples={samples!r} needs a key to draw the labels with: pass key=")
        if key is not None and samples is None:
            raise ValueError("key is for the Monte Carlo Fisher: pass samples= too, or no key")
        if samples is not None and (not isinstance(samples, int) or samples < 1):
            raise ValueError(f"samples must be a positive integer; got {samples!r}")
        predictions = eqx.filter_eval_shape(predict_fn, check_model(model), *_first_batch(data))
        _examples(predictions)
        example = jax.tree.map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), predictions
        )
        label = eqx.filter_eval_shape(likelihood.sample, example, key=jax.random.key(0))
        try:
            check_scalar_loss(likelihood.log_prob, example, label)
        except ValueError as error:
            raise ValueError(f"{type(likelihood).__name__}.log_prob: {error}") from error
        if samples is None:
            eqx.filter_eval_shape(likelihood.output_fisher_mv, example, example)
        self.parameters, self.rest = split_block(model, block)
        self.predict_fn, self.likelihood, self.data = predict_fn, likelihood, data
        self.samples, self.key = samples, key

    def _product(self, vector, key, *batch):
        def middle(predictions, tangent):
            examples = _examples(predictions)
            if key is None:
                products = jax.vmap(self.likelihood.output_fisher_mv)(predictions, tangent)
            else:
                sampled = lambda f, u, k: sampled_fisher_mv(
                    self.likelihood, f, u, samples=self.samples, key=k
                )
                products = jax.vmap(sampled)(predictions, tangent, jax.random.split(key, examples))
            return jax.tree.map(lambda product: product / examples, products)

        predict = lambda p: self.predict_fn(self.model(p), *batch)
        return _ravel(_jacobian_sandwich(predict, self.parameters, self.unravel(vector), middle))

    def mv(self, vector):
        if self.data is None:
            return self._product(vector, self.key)
        batches = jax.tree.leaves(self.data)[0].shape[0]
        keys = None if self.key is None else jax.random.split(self.key, batches)
        product = lambda v, stream: self._product(v, *stream)
        return _mean_over_batches(product, (keys, self.data), vector)
