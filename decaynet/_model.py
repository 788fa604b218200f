"""The sequence classifier of §6.1 and App. C: a recurrent cell and a softmax head on `q_D`.

The classifier takes a cell *class* and builds the cell itself (`cell.for_sequences`), from its
own key, so that `eqx.filter_vmap` over keys gives many seeds at once; cell-specific keywords
(`clip_decrement=True` for `DecayCell`) pass through. The normalisation is an object (it has no
randomness). Construct with its state (empty unless the normalisation keeps statistics). The
classifier takes a batch, as `scan_cell` does (recurrent batch normalisation needs the batch):

```python
model, state = eqx.nn.make_with_state(SequenceClassifier)(
    cell=DecayCell, input_size=28, hidden_size=32, num_classes=10, sequence_length=28,
    normalisation=RecurrentBatchNorm(32, 28), init="paper", key=key)
logits, state = model(images, state, inference=False)   # images: (batch, 28, 28)
```
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
from jaxtyping import Array, Float, PRNGKeyArray

from decaynet._cells import (
    INITIALISATIONS,
    AbstractGatedCell,
    CellState,
    Trajectory,
    build_cell,
    scan_cell,
)
from decaynet._normalisation import AbstractNormalisation, NoNormalisation
from decaynet._recurrence import BACKWARDS
from memdyn.internal import as_float_array, check_count, check_in, check_shape


def parameter_count(input_size: int, hidden_size: int, num_classes: int = 10) -> int:
    """The paper's count for an LSTM or DecayNet classifier: `4N(M + N) + 4N + CN + C`."""
    n, m = check_count("hidden_size", hidden_size), check_count("input_size", input_size)
    check_count("num_classes", num_classes)
    return 4 * n * (m + n) + 4 * n + num_classes * n + num_classes


class SequenceClassifier(eqx.Module):
    """`softmax(W_out q_D + b_out)` after running a gated cell over `x_1..x_D` (`scan_cell`).

    `cell` is a cell class (`LSTMCell`, `DecayCell`, any `AbstractGatedCell`), built with
    `sequence_length` and `init` and the extra `cell_options`. `backward` and `unroll` are
    `scan_cell`'s (how the recurrence is differentiated, and its loop unrolling).
    """

    cell: AbstractGatedCell
    head: eqx.nn.Linear
    normalisation: AbstractNormalisation
    sequence_length: int = eqx.field(static=True)
    backward: str = eqx.field(static=True)
    unroll: int = eqx.field(static=True)

    def __init__(
        self,
        cell: type[AbstractGatedCell],
        input_size: int,
        hidden_size: int,
        num_classes: int,
        sequence_length: int,
        *,
        normalisation: AbstractNormalisation | None = None,
        init: str = "paper",
        backward: str = "fused",
        unroll: int = 1,
        key: PRNGKeyArray,
        **cell_options,
    ):
        check_in("init", init, INITIALISATIONS)
        check_in("backward", backward, BACKWARDS)
        check_count("unroll", unroll)
        check_count("num_classes", num_classes)
        check_count("sequence_length", sequence_length)
        if normalisation is None:
            normalisation = NoNormalisation()
        if not isinstance(normalisation, AbstractNormalisation):
            raise ValueError(
                f"normalisation must be an AbstractNormalisation; got {normalisation!r}"
            )
        cell_key, head_key = jax.random.split(key)
        self.cell = build_cell(
            cell,
            input_size,
            hidden_size,
            sequence_length=sequence_length,
            init=init,
            key=cell_key,
            **cell_options,
        )
        head = eqx.nn.Linear(hidden_size, num_classes, key=head_key)
        if init == "paper":
            bound = 1.0
            weight = jax.random.uniform(
                head_key, head.weight.shape, dtype=float, minval=-bound, maxval=bound
            )
            head = eqx.tree_at(lambda h: (h.weight, h.bias), head, (weight, head.bias * 0))
        self.head = head
        self.normalisation = normalisation
        self.sequence_length = sequence_length
        self.backward = backward
        self.unroll = unroll

    def encode(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[CellState, Trajectory, eqx.nn.State]:
        """Run the cell over a batch: final cell states, trajectories, updated model state.

        `xs` must be `(batch, sequence_length, input_size)`; `scan_cell` checks its dtype and
        values, once per batch, never per step."""
        xs = as_float_array("xs", xs)
        check_shape("xs", xs, (None, self.sequence_length, self.cell.input_size))
        return scan_cell(
            self.cell,
            self.normalisation,
            xs,
            state,
            inference=inference,
            backward=self.backward,
            unroll=self.unroll,
        )

    def __call__(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "batch classes"], eqx.nn.State]:
        """Logits of a batch (apply `log_softmax` for the softmax classifier) and the state."""
        final, _, state = self.encode(xs, state, inference=inference)
        return jax.vmap(self.head)(final.q), state


def count_parameters(model: eqx.Module) -> int:
    """Number of trainable scalars (inexact array leaves) in a model."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return sum(math.prod(leaf.shape) for leaf in leaves)


def row_classifier(
    cell: type[AbstractGatedCell], hidden_size: int, init: str = "pytorch"
) -> Callable[[PRNGKeyArray], tuple[SequenceClassifier, eqx.nn.State]]:
    """Table 2's row-by-row classifier (28 steps of 28 pixels, 10 classes, no normalisation) as a
    function of its key, `key -> (model, state)`, for `memdyn.init_run`."""

    def make(key: PRNGKeyArray) -> tuple[SequenceClassifier, eqx.nn.State]:
        return eqx.nn.make_with_state(SequenceClassifier)(
            cell=cell,
            input_size=28,
            hidden_size=hidden_size,
            num_classes=10,
            sequence_length=28,
            init=init,
            key=key,
        )

    return make
