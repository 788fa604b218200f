"""Training and evaluating the sequence classifiers of §6.1 and App. C with memdyn's trainer.

`classifier_loss` is the softmax cross-entropy of a batch (the classifier takes the whole batch, so
recurrent batch normalisation sees it), in the form `memdyn.train_epochs` takes; `evaluate` is the
test accuracy of every seed of a run, with batch norm in inference mode.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int

from memdyn import RunState
from memdyn.internal import check_count


def classifier_loss(
    model: eqx.Module,
    model_state: eqx.nn.State,
    xb: Float[Array, "batch time features"],
    yb: Int[Array, " batch"],
) -> tuple[Float[Array, ""], eqx.nn.State]:
    """Mean softmax cross-entropy of `model` on a batch (training mode) and the updated state."""
    logits, model_state = model(xb, model_state, inference=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()
    return loss, model_state


@eqx.filter_jit
def _correct(params, static, model_state, xb, yb, mask):
    def one(p, s):
        model = eqx.combine(p, static)
        logits, _ = model(xb, s, inference=True)
        return jnp.sum((jnp.argmax(logits, axis=-1) == yb) * mask)

    return jax.vmap(one)(params, model_state)


def evaluate(
    run: RunState,
    static: Any,
    xs: Float[Array, "n time features"],
    ys: Int[Array, " n"],
    *,
    batch_size: int = 1000,
) -> Float[np.ndarray, " seeds"]:
    """Test accuracy of every seed (BN in inference mode: running statistics)."""
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    n = xs.shape[0]
    if n == 0 or ys.shape != (n,):
        raise ValueError(f"evaluate needs n > 0 examples and ys of shape ({n},); got {ys.shape}")
    batch_size = min(check_count("batch_size", batch_size), n)
    correct = 0
    for start in range(0, n, batch_size):
        xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
        pad = batch_size - xb.shape[0]
        mask = jnp.concatenate([jnp.ones(xb.shape[0]), jnp.zeros(pad)])
        if pad:
            xb = jnp.concatenate([xb, jnp.zeros((pad, *xb.shape[1:]), xb.dtype)])
            yb = jnp.concatenate([yb, jnp.zeros(pad, yb.dtype)])
        correct = correct + _correct(run.params, static, run.model_state, xb, yb, mask)
    return np.asarray(correct, dtype=float) / n
