"""Likelihoods p(y | f): the distribution of a label y given one example's prediction f, as
strategy objects that `memdyn.FisherOperator` takes to build the true Fisher information.

The true Fisher of a model f(x; θ) with likelihood p is

    F = E_x E_{y ~ p(·|f(x;θ))} [∇_θ log p(y|f) ∇_θ log p(y|f)ᵀ] = E_x [Jᵀ F_f J],

J = ∂f/∂θ and F_f = E_{y ~ p(·|f)} [∇_f log p ∇_f log p ᵀ] the Fisher information of the output
distribution, which is also the Hessian of KL(p(·|f₀) ‖ p(·|f)) in f at f = f₀. Unlike the
empirical Fisher it never looks at the data's labels; unlike the Gauss–Newton matrix Jᵀ H_ℓ J of
ℓ = −log p(y|f) it does not depend on them either. The two agree where f is the natural parameter
of an exponential family (the canonical link: `Categorical` logits, `Gaussian` means), since then
H_ℓ = F_f for every y; elsewhere (`Bernoulli` through a probit link) only E_y[H_ℓ] = F_f.

A likelihood acts on one example (as an Equinox model's `__call__` does); the operator maps it
over the examples. A subclass gives `log_prob` and `sample` (all the Monte Carlo Fisher needs),
and for the exact Fisher either `output_fisher_mv` in closed form or `kl_divergence`, whose
Hessian the default `output_fisher_mv` takes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, Key, PyTree


class AbstractLikelihood(eqx.Module):
    """p(y | f) for one example's prediction f (any pytree of arrays): subclass it for a new
    output distribution."""

    @abc.abstractmethod
    def log_prob(self, prediction: PyTree, label: PyTree) -> Float[Array, ""]:
        """log p(y | f), a real scalar."""

    @abc.abstractmethod
    def sample(self, prediction: PyTree, *, key: Key[Array, ""]) -> PyTree:
        """One label y ~ p(· | f)."""

    def kl_divergence(self, reference: PyTree, prediction: PyTree) -> Float[Array, ""]:
        """KL(p(·|f₀) ‖ p(·|f)), f₀ = `reference`: give it (or `output_fisher_mv`) for the exact
        Fisher."""
        raise NotImplementedError(
            f"{type(self).__name__} gives neither output_fisher_mv nor kl_divergence, so its "
            "exact Fisher is unknown: define one of them, or pass samples= and key= for the "
            "Monte Carlo Fisher"
        )

    def output_fisher_mv(self, prediction: PyTree, tangent: PyTree) -> PyTree:
        """F_f u, F_f = E_y[∇_f log p ∇_f log pᵀ] the Fisher information of p(·|f) in f. By
        default the Hessian of f' ↦ KL(p(·|f) ‖ p(·|f')) at f' = f times u (forward over
        reverse); subclasses with a closed form override it."""
        gradient = jax.grad(lambda other: self.kl_divergence(prediction, other))
        return jax.jvp(gradient, (prediction,), (tangent,))[1]


class Categorical(AbstractLikelihood):
    """p(y | f) = softmax(f)_y, f the logits (last axis the classes) and y an integer class:
    −log p is softmax cross-entropy, and F_f = diag(p) − p pᵀ (p = softmax(f)) equals its
    Hessian, so the true Fisher equals the Gauss–Newton matrix of the cross-entropy."""

    def log_prob(self, prediction: Float[Array, " classes"], label: Int[Array, ""]):
        return jax.nn.log_softmax(prediction)[label]

    def sample(self, prediction: Float[Array, " classes"], *, key):
        return jax.random.categorical(key, prediction)

    def kl_divergence(self, reference, prediction):
        log_reference = jax.nn.log_softmax(reference)
        log_other = jax.nn.log_softmax(prediction)
        return jnp.sum(jnp.exp(log_reference) * (log_reference - log_other))

    def output_fisher_mv(self, prediction, tangent):
        probabilities = jax.nn.softmax(prediction)
        return probabilities * (tangent - jnp.dot(probabilities, tangent))


class Gaussian(AbstractLikelihood):
    """p(y | f) = N(y; f, σ² I), f the mean and σ = `scale` fixed: −log p is the squared error
    ‖y − f‖² / (2σ²) up to a constant, and F_f = I / σ² its Hessian, so the true Fisher equals
    the Gauss–Newton matrix of that squared error."""

    scale: float | Float[Array, ""] = 1.0

    def __check_init__(self):
        if isinstance(self.scale, (int, float)) and not self.scale > 0:
            raise ValueError(f"scale must be positive; got {self.scale}")

    def log_prob(self, prediction: Float[Array, "*outputs"], label: Float[Array, "*outputs"]):
        residual = (label - prediction) / self.scale
        return -0.5 * jnp.sum(residual**2 + jnp.log(2 * jnp.pi * self.scale**2))

    def sample(self, prediction: Float[Array, "*outputs"], *, key):
        noise = jax.random.normal(key, jnp.shape(prediction), jnp.result_type(prediction))
        return prediction + self.scale * noise

    def kl_divergence(self, reference, prediction):
        return 0.5 * jnp.sum((reference - prediction) ** 2) / self.scale**2

    def output_fisher_mv(self, prediction, tangent):
        return tangent / self.scale**2


class Bernoulli(AbstractLikelihood):
    """Independent p(y = 1 | f) = π = link(f) elementwise, y ∈ {0, 1}: with the default
    `link=jax.nn.sigmoid` (f the logits, canonical) the true Fisher equals the Gauss–Newton
    matrix of the binary cross-entropy. With any other link, say the probit
    `jax.scipy.stats.norm.cdf`, F_f = diag(link'(f)² / (π (1 − π))) is E_y of the
    cross-entropy's Hessian but not the Hessian at the observed labels, so the two differ.
    The exact Fisher is the Hessian of the KL divergence (the default `output_fisher_mv`)."""

    link: Callable[[Array], Array] = jax.nn.sigmoid

    def log_prob(self, prediction: Float[Array, "*outputs"], label: Float[Array, "*outputs"]):
        probability = self.link(prediction)
        return jnp.sum(label * jnp.log(probability) + (1 - label) * jnp.log1p(-probability))

    def sample(self, prediction: Float[Array, "*outputs"], *, key):
        probability = self.link(prediction)
        return jax.random.bernoulli(key, probability).astype(jnp.result_type(probability))

    def kl_divergence(self, reference, prediction):
        p, q = self.link(reference), self.link(prediction)
        return jnp.sum(p * (jnp.log(p) - jnp.log(q)) + (1 - p) * (jnp.log1p(-p) - jnp.log1p(-q)))


def sampled_fisher_mv(
    likelihood: AbstractLikelihood,
    prediction: PyTree,
    tangent: PyTree,
    *,
    samples: int,
    key: Key[Array, ""],
) -> PyTree:
    """(1/S) Σₛ gₛ ⟨gₛ, u⟩, gₛ = ∇_f log p(yₛ | f) for S labels yₛ ~ p(·|f) drawn with `key`:
    an unbiased estimate of the output Fisher product F_f u, the Monte Carlo Fisher's middle."""

    def one(sample_key):
        label = likelihood.sample(prediction, key=sample_key)
        score = jax.grad(likelihood.log_prob)(prediction, label)
        along = optax.tree_utils.tree_vdot(score, tangent)
        return jax.tree.map(lambda g: g * along, score)

    terms = jax.vmap(one)(jax.random.split(key, samples))
    return jax.tree.map(lambda term: jnp.mean(term, axis=0), terms)
