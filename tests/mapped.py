"""Shared checks of the tests/*/test_mapped.py files: a path that maps over members (`vmap`,
`eqx.filter_vmap`, a sharded sweep) must equal its members run one by one, unbatched, and where it
differentiates, its gradients must equal central finite differences.

Why a test of each mapped path in both precisions: XLA:CPU in JAX ≥ 0.8 on AVX-512 processors
miscompiles `jax.vmap(jax.grad(f))` of a `lax.scan` LSTM in float64 at small odd sizes (batch 4,
time 6, input 3, hidden 5; README "Tested stack"; the project notes, "The stack itself can be
wrong"): the losses agree, the gradients are 0.06 away from the members'. A suite that only
compares a sweep with itself, or with a sweep of one member, does not see it.

Comparisons are normwise per leaf: ‖a − b‖_∞ ≤ rtol · ‖b‖_∞. Elementwise relative errors would
fail on entries that cancel to near zero, where a batched program may legitimately round
differently from an unbatched one (another summation order in a batched matrix product); the
normwise gap of such a reordering is a few ulps of the leaf's scale. Integer leaves (steps,
counts, keys' data) must be exactly equal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

PRECISIONS = ("float32", "float64")


class Size(NamedTuple):
    """Shapes of a mapped test: members of the sweep, batch, time steps, inputs, hidden units."""

    members: int
    batch: int
    time: int
    inputs: int
    hidden: int


SIZES = {
    # The reproduction's shapes: the miscompile shows here.
    "small": Size(members=3, batch=4, time=6, inputs=3, hidden=5),
    # Row-by-row MNIST's sequence (28 steps of 28 inputs) and hidden 32, a smaller batch.
    "realistic": Size(members=4, batch=32, time=28, inputs=28, hidden=32),
}
# Batched and unbatched programs may sum in another order: a few ulps of each leaf's scale, and
# a little more after a few steps of training or a Lanczos recurrence (rounding is carried on).
RTOL = {"float32": 1e-5, "float64": 1e-12}


@contextlib.contextmanager
def precision(name: str) -> Iterator[jnp.dtype]:
    """JAX's default float set to `name` ("float32" or "float64") inside the block."""
    with jax.enable_x64(name == "float64"):
        yield jnp.dtype(name)


def member(tree: Any, index: int, *, size: int | None = None) -> Any:
    """Member `index` of a stacked pytree: every array leaf whose leading axis has length `size`
    (default: the first array leaf's) indexed on it; other leaves (scalars, unstacked arrays,
    non-arrays) left alone."""
    leaves = [x for x in jax.tree.leaves(tree) if _is_array(x) and x.ndim > 0]
    size = leaves[0].shape[0] if size is None else size

    def take(x):
        if not (_is_array(x) and x.ndim > 0 and x.shape[0] == size):
            return x
        if _is_key(x):
            return x[index]
        return np.asarray(x)[index]  # NumPy: indexing a JAX array compiles per shape

    return jax.tree.map(take, tree)


def stack(trees: Sequence[Any]) -> Any:
    """Members stacked on a new leading axis (array leaves); other leaves taken from the first.
    Through NumPy (keys excepted): an eager `jnp.stack` compiles a program per leaf shape."""

    def stacked(*xs):
        if not _is_array(xs[0]):
            return xs[0]
        if _is_key(xs[0]):
            return jnp.stack(xs)
        return jax.device_put(np.stack([np.asarray(x) for x in xs]))

    return jax.tree.map(
        stacked,
        *trees,
        is_leaf=lambda x: x is None,
    )


def relative_gap(actual: Any, expected: Any) -> float:
    """‖actual − expected‖_∞ / max(‖expected‖_∞, tiny) of one array."""
    a, b = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def assert_trees_close(actual: Any, expected: Any, *, rtol: float, what: str = "") -> None:
    """Equal structure; every floating leaf within `rtol` normwise (module docstring), every
    integer or boolean leaf exactly equal, every non-array leaf equal. The message names the leaf
    and its gap."""
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(actual)
    paths_b, tree_b = jax.tree_util.tree_flatten_with_path(expected)
    assert tree_a == tree_b, f"{what}: structures differ:\n{tree_a}\n{tree_b}"
    assert paths_a, f"{what}: nothing to compare"
    for (path, a), (_, b) in zip(paths_a, paths_b, strict=True):
        name = f"{what}{jax.tree_util.keystr(path)}"
        if not _is_array(a):
            assert a == b, f"{name}: {a!r} != {b!r}"
            continue
        a, b = _data(a), _data(b)
        assert a.shape == b.shape, f"{name}: shapes {a.shape} and {b.shape}"
        assert a.dtype == b.dtype, f"{name}: dtypes {a.dtype} and {b.dtype}"
        if not np.issubdtype(a.dtype, np.inexact):
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        assert np.array_equal(np.isfinite(a), np.isfinite(b)), f"{name}: non-finite entries differ"
        finite = np.isfinite(b)
        np.testing.assert_array_equal(a[~finite], b[~finite], err_msg=name)  # same inf and NaN
        gap = relative_gap(a[finite], b[finite])
        assert gap <= rtol, f"{name}: relative gap {gap:.3g} > {rtol:g}"


def assert_mapped_equals_members(
    mapped: Any, members: Sequence[Any], *, rtol: float, size: int | None = None
) -> None:
    """`mapped` (leading axis over members) equals `members[i]` at every index `i`."""
    size = len(members) if size is None else size
    for index, expected in enumerate(members):
        actual = member(mapped, index, size=size)
        assert_trees_close(actual, expected, rtol=rtol, what=f"member {index}")


def assert_gradient_matches_central_differences(
    loss: Callable[[Any], Any],
    parameters: Any,
    gradient: Any,
    *,
    key: jax.Array,
    step: float = 1e-5,
    rtol: float = 1e-6,
) -> None:
    """Per floating leaf of `parameters`: the directional derivative along a random unit
    direction in that leaf alone, by central differences of `loss` (float64), equals
    ⟨gradient, direction⟩ within `rtol` of the leaf's gradient norm (a gradient off in one leaf
    is not diluted by the others). Central differences with step h err by O(h²) from the third
    derivative and O(ε|J|/h) from rounding: ~1e-10 here, far inside `rtol`.

    `loss` is called eagerly, twice per leaf: pass a program already compiled (the members'
    own), since compiling another costs more than the check."""
    leaves, treedef = jax.tree.flatten(parameters)
    leaves = [np.asarray(x) if eqx.is_array(x) else x for x in leaves]
    grads = jax.tree.leaves(gradient)
    assert len(grads) == len(leaves), "gradient and parameters differ in structure"
    # NumPy's generator, seeded by the key: an eager `jax.random.normal` compiled a program per
    # leaf shape (0.3–0.5 s each on a CPU), more than the check itself.
    rng = np.random.default_rng(_data(key).ravel().tolist())
    checked = 0
    for index, (leaf, grad) in enumerate(zip(leaves, grads, strict=True)):
        if not eqx.is_inexact_array(leaf):
            continue
        assert leaf.dtype == jnp.float64, "central differences need float64"
        direction = rng.standard_normal(leaf.shape)
        direction = direction / np.linalg.norm(direction)

        def moved(h, index=index, direction=direction):
            shifted = [x + h * direction if i == index else x for i, x in enumerate(leaves)]
            return float(loss(jax.tree.unflatten(treedef, shifted)))

        numeric = (moved(step) - moved(-step)) / (2 * step)
        analytic = float(np.vdot(np.asarray(grad), direction))
        scale = max(float(np.linalg.norm(np.asarray(grad))), 1e-8)
        assert abs(numeric - analytic) <= rtol * scale, (
            f"leaf {index}: central difference {numeric!r}, gradient {analytic!r} "
            f"(gap {abs(numeric - analytic) / scale:.3g} of the leaf's gradient norm)"
        )
        checked += 1
    assert checked, "no floating leaf to check"


class ScanLSTM(eqx.Module):
    """A user's LSTM written as the miscompile's reproduction is: one `lax.scan` over time with
    the batch as the rows of every product, and a linear readout of the last hidden state. Not
    memdyn's or decaynet's code, so the memdyn tests stay model-agnostic. Arrays in JAX's default
    float (use inside `precision`)."""

    weight_input: jax.Array
    weight_recurrent: jax.Array
    bias: jax.Array
    readout: jax.Array

    def __init__(self, input_size: int, hidden_size: int, *, key: jax.Array):
        keys = jax.random.split(key, 4)
        bound = hidden_size**-0.5  # PyTorch's U(−1/√H, 1/√H)
        uniform = lambda k, shape: jax.random.uniform(k, shape, minval=-bound, maxval=bound)
        self.weight_input = uniform(keys[0], (4 * hidden_size, input_size))
        self.weight_recurrent = uniform(keys[1], (4 * hidden_size, hidden_size))
        self.bias = uniform(keys[2], (4 * hidden_size,))
        self.readout = uniform(keys[3], (hidden_size,))

    def __call__(self, xs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`xs` (batch, time, input) → the readout (batch,) and the hidden states (time, batch,
        hidden)."""

        def step(carry, x):
            h, s = carry
            z = x @ self.weight_input.T + h @ self.weight_recurrent.T + self.bias
            i, f, g, o = jnp.split(z, 4, axis=-1)
            s = jax.nn.sigmoid(f) * s + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(s)
            return (h, s), h

        zeros = jnp.zeros((xs.shape[0], self.weight_recurrent.shape[1]), xs.dtype)
        (h, _), hs = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xs, 0, 1))
        return h @ self.readout, hs


def regression_loss(model: ScanLSTM, xs: jax.Array, ys: jax.Array) -> jax.Array:
    """Squared error of the readout plus the mean square of every hidden state: the loss depends
    on the whole trajectory, as the reproduction's does."""
    outputs, hidden = model(xs)
    return jnp.mean((outputs - ys) ** 2) + jnp.mean(hidden**2)


def regression_data(key: jax.Array, batch: int, time: int, inputs: int):
    """Inputs N(0, 1) and targets that need memory (the third input step) and the last step."""
    xs = jax.random.normal(key, (batch, time, inputs))
    return xs, jnp.tanh(xs[:, 2, 0] - 0.5 * xs[:, -1, -1])


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | np.generic)


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _data(x: Any) -> np.ndarray:
    """The array as NumPy; a typed PRNG key as its raw data."""
    return np.asarray(jax.random.key_data(x) if _is_key(x) else x)
