"""The sequence classifier of §6.1 and App. C: a recurrent cell and a softmax head on its last
output, for gated cells and for any `memdyn.AbstractCell`.

Two classifiers share `AbstractSequenceClassifier` (features of a batch, then the head) and differ
in how they run the cell: `SequenceClassifier` runs a gated cell (LSTM, DecayNet) through
`scan_cell`, the fused recurrent core with its hand-written backward pass and a normalisation;
`CellClassifier` runs any `memdyn.AbstractCell` (a GRU, an LRU, a user's cell) with
`memdyn.unroll` vmapped over the batch, differentiated by autodiff, and puts the head on the last
output `y_D`. `row_classifier` picks one from the cell class.

A classifier takes a cell *class* and builds the cell itself (`cell.for_sequences`, or the cell's
constructor), from its own key, so that `eqx.filter_vmap` over keys gives many seeds at once;
cell-specific keywords (`clip_decrement=True` for `DecayCell`) pass through. A
`SequenceClassifier`'s normalisation is an object (it has no randomness). Construct with its
state (empty unless the normalisation keeps statistics). The classifier takes a batch, as
`scan_cell` does (recurrent batch normalisation needs the batch):

```python
model, state = eqx.nn.make_with_state(SequenceClassifier)(
    cell=DecayCell, input_size=28, hidden_size=32, num_classes=10, sequence_length=28,
    normalisation=RecurrentBatchNorm(32, 28), init=PaperInit(), key=key)
logits, state = model(images, state, inference=False)   # images: (batch, 28, 28)
```
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from decaynet._cells import AbstractGatedCell, CellState, Trajectory, build_cell, scan_cell
from decaynet._initialisation import AbstractInit, PaperInit, PyTorchInit, check_init
from decaynet._normalisation import AbstractNormalisation, NoNormalisation
from decaynet._recurrence import BACKWARDS, AbstractBackward, FusedBackward
from memdyn import AbstractCell, check_finite, unroll
from memdyn.internal import as_float_array, check_count, check_shape, check_strategy


def parameter_count(input_size: int, hidden_size: int, num_classes: int = 10) -> int:
    """The paper's count for an LSTM or DecayNet classifier: `4N(M + N) + 4N + CN + C`."""
    n, m = check_count("hidden_size", hidden_size), check_count("input_size", input_size)
    check_count("num_classes", num_classes)
    return 4 * n * (m + n) + 4 * n + num_classes * n + num_classes


def cell_label(cell: type[AbstractGatedCell] | type[AbstractCell]) -> str:
    """A cell class's display name: its `label` (a gated cell's, e.g. "DecayNet"), otherwise its
    class name without a trailing "Cell" (`memdyn.GRUCell` -> "GRU")."""
    return getattr(cell, "label", None) or cell.__name__.removesuffix("Cell")


class AbstractSequenceClassifier(eqx.Module):
    """`softmax(W_out h + b_out)` of the features `h` a recurrent cell gives a batch of sequences.

    A subclass says how the cell runs (`features`) and what it is called (`label`), and holds the
    head as a field `head: eqx.nn.Linear` after its cell. (Not declared here as an
    `eqx.AbstractVar`: a field declared in the base comes first in every subclass, which would put
    the head's weights ahead of the cell's in the flat parameter vector and change what a
    random probe or a clipped norm sees, and what a checkpoint holds.) The model state is the
    normalisation's (empty where there is none), threaded through unchanged by classifiers
    without one.
    """

    @property
    @abc.abstractmethod
    def label(self) -> str:
        """The cell's display name ("LSTM", "GRU", ...)."""

    @abc.abstractmethod
    def features(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "batch hidden"], eqx.nn.State]:
        """The head's input for every sequence of the batch, and the updated model state."""

    def __call__(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "batch classes"], eqx.nn.State]:
        """Logits of a batch (apply `log_softmax` for the softmax classifier) and the state."""
        features, state = self.features(xs, state, inference=inference)
        return jax.vmap(self.head)(features), state


class SequenceClassifier(AbstractSequenceClassifier):
    """`softmax(W_out q_D + b_out)` after running a gated cell over `x_1..x_D` (`scan_cell`).

    `cell` is a cell class (`LSTMCell`, `DecayCell`, any `AbstractGatedCell`), built with
    `sequence_length` and `init` and the extra `cell_options`; `init` (an `AbstractInit`) also
    builds the head (`init.linear`: `PaperInit()` draws its weights from `U(−1, 1)` with zero
    biases, `PyTorchInit()` keeps Equinox's `Linear`, PyTorch's `U(±1/√N)`). `backward` and
    `unroll` are `scan_cell`'s (how the recurrence is differentiated, and its loop unrolling).
    """

    cell: AbstractGatedCell
    head: eqx.nn.Linear
    normalisation: AbstractNormalisation
    sequence_length: int = eqx.field(static=True)
    backward: AbstractBackward
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
        init: AbstractInit = PaperInit(),  # noqa: B008 (immutable, as Diffrax does)
        backward: AbstractBackward = FusedBackward(),  # noqa: B008 (immutable, as Diffrax does)
        unroll: int = 1,
        key: PRNGKeyArray,
        **cell_options,
    ):
        check_init(init)
        check_strategy("backward", backward, AbstractBackward, BACKWARDS)
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
        self.head = init.linear(hidden_size, num_classes, key=head_key)
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

    @property
    def label(self) -> str:
        return self.cell.label

    def features(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "batch hidden"], eqx.nn.State]:
        """`q_D` of every sequence, and the updated model state."""
        final, _, state = self.encode(xs, state, inference=inference)
        return final.q, state


class CellClassifier(AbstractSequenceClassifier):
    """`softmax(W_out y_D + b_out)` after running any `memdyn.AbstractCell` over `x_1..x_D`.

    `cell` is a cell class whose constructor takes `(input_size, hidden_size, *, key, **options)`
    (`memdyn.GRUCell`, `memdyn.LRUCell`, a user's cell) and initialises the cell its own way; the
    extra `cell_options` pass through (e.g. `r_min` of the LRU). `y_D` is the cell's output at the
    last step (`h_D` of a GRU; `Re(C x_D) + d ⊙ u_D` of an LRU, whose output has the input's
    size), whatever its size; the head is Equinox's (PyTorch's) default `Linear`. The batch runs
    through `memdyn.unroll` under `vmap`, differentiated by autodiff. No normalisation: the model
    state passes through unchanged.

    ```python
    model, state = eqx.nn.make_with_state(CellClassifier)(
        cell=memdyn.GRUCell, input_size=28, hidden_size=32, num_classes=10, sequence_length=28,
        key=key)
    logits, state = model(images, state)   # images: (batch, 28, 28)
    ```
    """

    cell: AbstractCell
    head: eqx.nn.Linear
    input_size: int = eqx.field(static=True)
    sequence_length: int = eqx.field(static=True)

    def __init__(
        self,
        cell: type[AbstractCell],
        input_size: int,
        hidden_size: int,
        num_classes: int,
        sequence_length: int,
        *,
        key: PRNGKeyArray,
        **cell_options,
    ):
        if not (isinstance(cell, type) and issubclass(cell, AbstractCell)):
            raise ValueError(f"cell must be a subclass of memdyn.AbstractCell; got {cell!r}")
        check_count("input_size", input_size)
        check_count("hidden_size", hidden_size)
        check_count("num_classes", num_classes)
        check_count("sequence_length", sequence_length)
        cell_key, head_key = jax.random.split(key)
        self.cell = cell(input_size, hidden_size, key=cell_key, **cell_options)
        step_input = jax.ShapeDtypeStruct((input_size,), jnp.result_type(float))
        output = jax.eval_shape(lambda c, x: c(c.initial_carry(), x)[1], self.cell, step_input)
        if not (isinstance(output, jax.ShapeDtypeStruct) and output.ndim == 1):
            raise ValueError(
                f"{cell.__name__}'s output must be one vector per step for the head; "
                f"got {jax.tree.map(lambda o: o.shape, output)}"
            )
        self.head = eqx.nn.Linear(output.shape[0], num_classes, key=head_key)
        self.input_size = input_size
        self.sequence_length = sequence_length

    @property
    def label(self) -> str:
        return cell_label(type(self.cell))

    def features(
        self,
        xs: Float[Array, "batch time features"],
        state: eqx.nn.State,
        *,
        inference: bool = False,
    ) -> tuple[Float[Array, "batch output"], eqx.nn.State]:
        """`y_D` of every sequence; `xs` must be finite and `(batch, sequence_length,
        input_size)`, checked once per batch."""
        del inference
        xs = as_float_array("xs", xs)
        check_shape("xs", xs, (None, self.sequence_length, self.input_size))
        xs = check_finite("xs", xs)
        _, outputs = jax.vmap(lambda sequence: unroll(self.cell, sequence))(xs)
        return outputs[:, -1], state


def count_parameters(model: eqx.Module) -> int:
    """Number of trainable scalars (inexact array leaves) in a model, or in its shape
    (`eqx.filter_eval_shape` of its constructor, which counts without building it)."""

    def trainable(leaf) -> bool:
        if isinstance(leaf, jax.ShapeDtypeStruct):
            return jnp.issubdtype(leaf.dtype, jnp.inexact)
        return eqx.is_inexact_array(leaf)

    leaves = jax.tree_util.tree_leaves(eqx.filter(model, trainable))
    return sum(math.prod(leaf.shape) for leaf in leaves)


def row_classifier(
    cell: type[AbstractGatedCell] | type[AbstractCell],
    hidden_size: int,
    init: AbstractInit = PyTorchInit(),  # noqa: B008 (immutable, as Diffrax does)
) -> Callable[[PRNGKeyArray], tuple[AbstractSequenceClassifier, eqx.nn.State]]:
    """Table 2's row-by-row classifier (28 steps of 28 pixels, 10 classes, no normalisation) as a
    function of its key, `key -> (model, state)`, for `memdyn.init_run`.

    A gated cell (`AbstractGatedCell`: LSTM, DecayNet) gives a `SequenceClassifier` (the fused
    `scan_cell`) initialised by `init`: `PyTorchInit()`, U(±1/√H), or `PaperInit()`, §6.1's
    U(−1, 1). Any other `memdyn.AbstractCell` gives a `CellClassifier` with the cell's own
    initialisation (the GRU's is PyTorch's U(±1/√H), the LRU's its paper's), which only
    `init=PyTorchInit()`, the default, selects: §6.1's scheme is defined for the gated cells, so
    any other `init` raises `ValueError` (a name, `TypeError`). The cell and `init` are checked
    here, before any model is built."""
    check_init(init)
    if isinstance(cell, type) and issubclass(cell, AbstractGatedCell):
        classifier, options = SequenceClassifier, {"init": init}
    elif isinstance(cell, type) and issubclass(cell, AbstractCell):
        if not isinstance(init, PyTorchInit):
            raise ValueError(
                f"init must be PyTorchInit() for a {cell_label(cell)} cell, built with its own "
                f"initialisation; init={init!r} is defined for the gated cells (LSTM, DecayNet) "
                "only"
            )
        classifier, options = CellClassifier, {}
    else:
        raise ValueError(
            f"cell must be a subclass of AbstractGatedCell or memdyn.AbstractCell; got {cell!r}"
        )

    def make(key: PRNGKeyArray) -> tuple[AbstractSequenceClassifier, eqx.nn.State]:
        return eqx.nn.make_with_state(classifier)(
            cell=cell,
            input_size=28,
            hidden_size=hidden_size,
            num_classes=10,
            sequence_length=28,
            key=key,
            **options,
        )

    return make
