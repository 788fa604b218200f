"""The true Fisher (`memdyn.FisherOperator`) against dense matrices built independently: Jacobians
from `jax.jacobian` of a flat function assembled here with the output Fisher in closed form
(NumPy), and, for a non-canonical likelihood (Bernoulli through a probit link), the expected outer
product of per-example scores with the labels enumerated. Canonical likelihoods against the
Gauss–Newton matrix of their negative log-likelihood; the Monte Carlo Fisher against the exact one
(convergence in the number of samples, unbiasedness over keys); blocks against slices; batches
against the whole dataset; bad input against its messages."""

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.stats import norm

import memdyn

pytestmark = pytest.mark.usefixtures("float64")

EXAMPLES, INPUTS, HIDDEN, OUTPUTS = 8, 3, 4, 3
SCALE = 0.7
probit = jax.scipy.stats.norm.cdf


class Net(eqx.Module):
    """A small two-layer net with an integer leaf (never a parameter)."""

    hidden: jax.Array
    bias: jax.Array
    readout: jax.Array
    calls: jax.Array

    def __init__(self, *, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.hidden = jax.random.normal(k1, (HIDDEN, INPUTS))
        self.bias = 0.1 * jax.random.normal(k2, (HIDDEN,))
        self.readout = jax.random.normal(k3, (OUTPUTS, HIDDEN)) / HIDDEN**0.5
        self.calls = jnp.array(0)

    def __call__(self, x):
        return self.readout @ jnp.tanh(self.hidden @ x + self.bias)


def predict(model, xs):
    return jax.vmap(model)(xs)


def _setup():
    model = Net(key=jax.random.key(0))
    xs = jax.random.normal(jax.random.key(1), (EXAMPLES, INPUTS))
    return jax.tree.map(
        lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, model
    ), xs


def _flat(model):
    """Independent of memdyn: the model's inexact arrays as one vector, and back."""
    parameters, static = eqx.partition(model, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(parameters)
    return flat, lambda v: eqx.combine(unravel(v), static)


def _output_fisher(name, f):
    """The output Fisher F_f of one example in closed form (NumPy)."""
    if name == "categorical":
        p = np.exp(f - f.max()) / np.exp(f - f.max()).sum()
        return np.diag(p) - np.outer(p, p)
    if name == "gaussian":
        return np.eye(f.size) / SCALE**2
    pi, density = norm.cdf(f), norm.pdf(f)  # probit: link'(f) = φ(f)
    return np.diag(density**2 / (pi * (1 - pi)))


LIKELIHOODS = {
    "categorical": memdyn.Categorical(),
    "gaussian": memdyn.Gaussian(SCALE),
    "probit": memdyn.Bernoulli(probit),
}


@eqx.filter_jit  # one program for every call: eagerly, each operation compiles on its own
def _jacobians(model, xs):
    """Jᵢ, the Jacobian of each example's outputs in the model's flat parameters."""
    flat, rebuild = _flat(model)
    return jax.jacobian(lambda v: predict(rebuild(v), xs))(flat)


def _dense_fisher(model, xs, name):
    """(1/N) Σᵢ Jᵢᵀ F_{fᵢ} Jᵢ from `jax.jacobian` and the closed-form output Fisher."""
    jacobians = np.asarray(_jacobians(model, xs))
    predictions = np.asarray(predict(model, xs))
    terms = [j.T @ _output_fisher(name, f) @ j for j, f in zip(jacobians, predictions, strict=True)]
    return np.mean(terms, axis=0)


@pytest.mark.parametrize("name", sorted(LIKELIHOODS))
def test_exact_fisher_equals_the_dense_closed_form_whole_and_per_block(name):
    model, xs = _setup()
    dense = _dense_fisher(model, xs, name)
    operator = memdyn.FisherOperator(lambda m: predict(m, xs), LIKELIHOODS[name], model)
    matrix = np.asarray(operator.as_matrix())
    assert operator.size == dense.shape[0] == HIDDEN * INPUTS + HIDDEN + OUTPUTS * HIDDEN
    np.testing.assert_allclose(matrix, dense, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(matrix).min() > -1e-12  # positive semi-definite
    readout = memdyn.FisherOperator(
        lambda m: predict(m, xs),
        LIKELIHOODS[name],
        model,
        block=memdyn.block(model, lambda m: m.readout),
    )
    part = slice(dense.shape[0] - OUTPUTS * HIDDEN, None)  # readout is the last leaf
    np.testing.assert_allclose(readout.as_matrix(), dense[part, part], rtol=1e-10, atol=1e-12)


def _cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))


def _squared_error(means, labels):
    return jnp.mean(jnp.sum((means - labels) ** 2, axis=-1)) / (2 * SCALE**2)


def _binary_cross_entropy(link):
    def loss(f, labels):
        p = link(f)
        return -jnp.mean(jnp.sum(labels * jnp.log(p) + (1 - labels) * jnp.log1p(-p), axis=-1))

    return loss


def _labels(key):
    """Labels of every kind the likelihoods take, for the Gauss–Newton matrices (the Fisher
    never reads them)."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "classes": jax.random.randint(k1, (EXAMPLES,), 0, OUTPUTS),
        "values": jax.random.normal(k2, (EXAMPLES, OUTPUTS)),
        "bits": jax.random.bernoulli(k3, 0.5, (EXAMPLES, OUTPUTS)).astype(jnp.float64),
    }


@pytest.mark.parametrize(
    "likelihood, loss, labels",
    [
        (memdyn.Categorical(), _cross_entropy, "classes"),
        (memdyn.Gaussian(SCALE), _squared_error, "values"),
        (memdyn.Bernoulli(), _binary_cross_entropy(jax.nn.sigmoid), "bits"),
    ],
    ids=["categorical", "gaussian", "logistic"],
)
def test_canonical_fisher_equals_the_gauss_newton_matrix(likelihood, loss, labels):
    model, xs = _setup()
    ys = _labels(jax.random.key(2))[labels]
    fisher = memdyn.FisherOperator(lambda m: predict(m, xs), likelihood, model)
    gauss_newton = memdyn.GaussNewtonOperator(
        lambda m: predict(m, xs), lambda f: loss(f, ys), model
    )
    np.testing.assert_allclose(fisher.as_matrix(), gauss_newton.as_matrix(), rtol=1e-10, atol=1e-12)


def test_probit_fisher_is_the_expected_outer_product_and_not_the_gauss_newton_matrix():
    """With p(y=1|f) = Φ(f), F = (1/N) Σᵢ Σ_y p(y|fᵢ) gᵢ(y) gᵢ(y)ᵀ, gᵢ(y) = ∇_θ log p(y|fᵢ),
    enumerating y ∈ {0,1}³; the Gauss–Newton matrix at observed labels differs from it."""
    model, xs = _setup()
    flat, rebuild = _flat(model)

    def log_prob(v, i, y):  # written here with jnp, not with memdyn.Bernoulli
        p = probit(predict(rebuild(v), xs)[i])
        return jnp.sum(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    score = jax.jit(jax.grad(log_prob))
    dense = np.zeros((flat.size, flat.size))
    for i in range(EXAMPLES):
        for bits in itertools.product((0.0, 1.0), repeat=OUTPUTS):
            y = jnp.array(bits)
            g = np.asarray(score(flat, i, y))
            dense += float(jnp.exp(log_prob(flat, i, y))) * np.outer(g, g) / EXAMPLES
    fisher = np.asarray(
        memdyn.FisherOperator(lambda m: predict(m, xs), memdyn.Bernoulli(probit), model).as_matrix()
    )
    np.testing.assert_allclose(fisher, dense, rtol=1e-9, atol=1e-11)
    ys = _labels(jax.random.key(2))["bits"]
    gauss_newton = np.asarray(
        memdyn.GaussNewtonOperator(
            lambda m: predict(m, xs), lambda f: _binary_cross_entropy(probit)(f, ys), model
        ).as_matrix()
    )
    gap = np.linalg.norm(fisher - gauss_newton) / np.linalg.norm(fisher)
    assert gap > 0.05, gap


def _relative_error(estimate, exact):
    return np.linalg.norm(np.asarray(estimate) - exact) / np.linalg.norm(exact)


@pytest.mark.parametrize("name", ["categorical", "probit"])
def test_monte_carlo_fisher_converges_to_the_exact_one_and_is_unbiased(name):
    """Error at 10⁴ labels per example (streamed over two batches, each its own labels) well
    below the error at 10 (theory: 1/√S, a factor 30); vᵀ F̂ v over 200 keys within 4 standard
    errors of vᵀ F v."""
    model, xs = _setup()
    likelihood = LIKELIHOODS[name]
    exact = _dense_fisher(model, xs, name)
    key = jax.random.key(3)
    few = memdyn.FisherOperator(lambda m: predict(m, xs), likelihood, model, samples=10, key=key)
    batches = xs.reshape(2, EXAMPLES // 2, INPUTS)
    many = memdyn.FisherOperator(predict, likelihood, model, data=batches, samples=10_000, key=key)
    few_error = _relative_error(few.as_matrix(), exact)
    many_error = _relative_error(many.as_matrix(), exact)
    assert many_error < 0.1 * few_error, (few_error, many_error)
    v = jax.random.normal(jax.random.key(4), (exact.shape[0],))

    def quadratic(key):
        one = memdyn.FisherOperator(lambda m: predict(m, xs), likelihood, model, samples=1, key=key)
        return v @ one.mv(v)

    estimates = np.asarray(jax.jit(jax.vmap(quadratic))(jax.random.split(key, 200)))
    target = float(v @ exact @ v)
    standard_error = estimates.std() / np.sqrt(len(estimates))
    assert abs(estimates.mean() - target) < 4 * standard_error, (estimates.mean(), target)
    assert standard_error < 0.2 * target  # the tolerance is tight enough to fail


def test_streamed_fisher_equals_the_whole_dataset_at_once():
    model, xs = _setup()
    likelihood = memdyn.Bernoulli(probit)
    whole = memdyn.FisherOperator(lambda m: predict(m, xs), likelihood, model)
    streamed = memdyn.FisherOperator(
        predict, likelihood, model, data=xs.reshape(4, EXAMPLES // 4, INPUTS)
    )
    np.testing.assert_allclose(streamed.as_matrix(), whole.as_matrix(), rtol=1e-10, atol=1e-12)


class Unspecified(memdyn.AbstractLikelihood):
    """A likelihood with neither a closed-form output Fisher nor a KL divergence."""

    def log_prob(self, prediction, label):
        return -0.5 * jnp.sum((label - prediction) ** 2)

    def sample(self, prediction, *, key):
        return prediction + jax.random.normal(key, prediction.shape)


class VectorLogProb(Unspecified):
    def log_prob(self, prediction, label):
        return -0.5 * (label - prediction) ** 2


def test_fisher_operator_rejects_bad_input_naming_it():
    model, xs = _setup()
    predict_xs = lambda m: predict(m, xs)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="samples=10 needs a key"):
        memdyn.FisherOperator(predict_xs, memdyn.Categorical(), model, samples=10)
    with pytest.raises(ValueError, match="key is for the Monte Carlo Fisher: pass samples="):
        memdyn.FisherOperator(predict_xs, memdyn.Categorical(), model, key=key)
    with pytest.raises(ValueError, match="samples must be a positive integer; got 0"):
        memdyn.FisherOperator(predict_xs, memdyn.Categorical(), model, samples=0, key=key)
    with pytest.raises(TypeError, match="likelihood must be a memdyn.AbstractLikelihood"):
        memdyn.FisherOperator(predict_xs, "categorical", model)
    with pytest.raises(ValueError, match="one leading example axis"):
        memdyn.FisherOperator(lambda m: jnp.sum(predict_xs(m)), memdyn.Gaussian(), model)
    with pytest.raises(ValueError, match="scale must be positive"):
        memdyn.Gaussian(0.0)
    with pytest.raises(ValueError, match="VectorLogProb.log_prob: .*scalar"):
        memdyn.FisherOperator(predict_xs, VectorLogProb(), model)
    with pytest.raises(NotImplementedError, match="neither output_fisher_mv nor kl_divergence"):
        memdyn.FisherOperator(predict_xs, Unspecified(), model)
    # The Monte Carlo Fisher needs only log_prob and sample: this is a Gaussian, F = Jᵀ J / N.
    sampled = memdyn.FisherOperator(predict_xs, Unspecified(), model, samples=20_000, key=key)
    exact = memdyn.FisherOperator(predict_xs, memdyn.Gaussian(1.0), model)
    v = jax.random.normal(key, (exact.size,))
    assert _relative_error(sampled.mv(v), np.asarray(exact.mv(v))) < 0.05
