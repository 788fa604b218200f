"""The sequence classifier of §6.1 and App. C: a recurrent cell and a softmax head on `q_D`.

Construct with its state (empty unless `batch_norm=True`) and batch with a named `vmap`, as
`eqx.nn.BatchNorm` does:

```python
model, state = eqx.nn.make_with_state(SequenceClassifier)(
    cell="lstm", input_size=28, hidden_size=32, num_classes=10, sequence_length=28,
    batch_norm=False, init="paper", key=key)
batched = jax.vmap(model, in_axes=(0, None), out_axes=(0, None), axis_name="batch")
logits, state = batched(images, state, inference=False)   # images: (batch, 28, 28)
```
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from decaynet._batchnorm import RecurrentBatchNorm
from decaynet._cells import INITIALISATIONS, CellState, DecayCell, LSTMCell, Trajectory, make_cell
from memdyn._validate import check_finite, check_in, check_positive, check_shape

BATCH_AXIS = "batch"


def parameter_count(input_size: int, hidden_size: int, num_classes: int = 10) -> int:
    """The paper's count for an LSTM or DecayNet classifier: `4N(M + N) + 4N + CN + C`."""
    n, m = hidden_size, input_size
    return 4 * n * (m + n) + 4 * n + num_classes * n + num_classes


class SequenceClassifier(eqx.Module):
    """`softmax(W_out q_D + b_out)` after running an LSTM or DecayNet cell over `x_1..x_D`.

    With `batch_norm=True` the cell runs with recurrent batch normalisation (see
    `decaynet._batchnorm`); it then needs a named batch axis (`axis_name="batch"`) in training.
    """

    cell: LSTMCell | DecayCell
    head: eqx.nn.Linear
    norm: RecurrentBatchNorm | None
    sequence_length: int = eqx.field(static=True)
    axis_name: str = eqx.field(static=True)

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        sequence_length: int,
        *,
        batch_norm: bool = False,
        init: str = "paper",
        clip_decrement: bool = False,
        axis_name: str = BATCH_AXIS,
        key: PRNGKeyArray,
    ):
        check_in("init", init, INITIALISATIONS)
        check_positive("num_classes", num_classes)
        check_positive("sequence_length", sequence_length)
        cell_key, head_key = jax.random.split(key)
        self.cell = make_cell(
            cell,
            input_size,
            hidden_size,
            sequence_length=sequence_length,
            clip_decrement=clip_decrement,
            init=init,
            key=cell_key,
        )
        head = eqx.nn.Linear(hidden_size, num_classes, key=head_key)
        if init == "paper":
            bound = 1.0
            weight = jax.random.uniform(
                head_key, head.weight.shape, dtype=float, minval=-bound, maxval=bound
            )
            head = eqx.tree_at(lambda h: (h.weight, h.bias), head, (weight, head.bias * 0))
        self.head = head
        self.norm = RecurrentBatchNorm(hidden_size, sequence_length) if batch_norm else None
        self.sequence_length = sequence_length
        self.axis_name = axis_name

    def encode(
        self, xs: Float[Array, "time features"], state: eqx.nn.State, *, inference: bool = False
    ) -> tuple[CellState, Trajectory, eqx.nn.State]:
        """Run the cell over the sequence: final cell state, trajectory, updated model state."""
        check_shape("xs", xs, (self.sequence_length, self.cell.input_size))
        check_finite("xs", xs)
        if self.norm is None:
            final, trajectory = self.cell.scan(xs)
            return final, trajectory, state
        return self.norm.scan(self.cell, xs, state, inference=inference, axis_name=self.axis_name)

    def __call__(
        self, xs: Float[Array, "time features"], state: eqx.nn.State, *, inference: bool = False
    ) -> tuple[Float[Array, " classes"], eqx.nn.State]:
        """Logits of one example (apply `log_softmax` for the softmax classifier) and the state."""
        final, _, state = self.encode(xs, state, inference=inference)
        return self.head(final.q), state


def count_parameters(model: eqx.Module) -> int:
    """Number of trainable scalars (inexact array leaves) in a model."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return sum(math.prod(leaf.shape) for leaf in leaves)
