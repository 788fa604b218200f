"""Synthetic Table 2 data for the decaynet tests: learnable in a few dozen steps, no dataset."""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def synthetic_rows(key, n):
    """Row-by-row 28 × 28 noise "images" whose last row lights pixels `2c, 2c + 1` for class `c`:
    learnable in a few dozen steps."""
    images, labels = _synthetic_rows(key, n)
    return np.asarray(images, np.float32), np.asarray(labels, np.int32)


@functools.partial(jax.jit, static_argnums=1)
def _synthetic_rows(key, n):
    """`synthetic_rows` in one compiled program (eagerly, each operation compiles)."""
    labels = jax.random.randint(key, (n,), 0, 10)
    images = jax.random.uniform(jax.random.fold_in(key, 1), (n, 28, 28), maxval=0.2)
    lit = (jnp.arange(28)[None, :] // 2 == labels[:, None]).astype(images.dtype)
    return images.at[:, -1].set(lit), labels
