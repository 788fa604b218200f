"""How the gated cells and the models around them draw their initial arrays: a strategy object
passed as `init`, as the recurrent core's `backward` is, never a string.

`PaperInit()` is §6.1's scheme: weights from `U(−1, 1)`, biases zero. `PyTorchInit()` is what
PyTorch's `nn.LSTM` and `nn.Linear` draw: every array from `U(−1/√N, 1/√N)`, `N` the layer's
hidden size (its input size for a dense layer). A scheme says how a layer's weight and bias are
drawn, and how a dense output layer (a classifier's head) is built; a new one is a subclass of
`AbstractInit` with those three methods.

```python
cell = DecayCell(28, 32, sequence_length=28, init=PaperInit(), key=key)
make = row_classifier(LSTMCell, 32, INITIALISATIONS["pytorch"])  # a command line's name
```

The command line's names for them are `INITIALISATIONS`, resolved once, by the experiments.
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray


class AbstractInit(eqx.Module):
    """How a layer's arrays are drawn; pass an instance as `init` (to a gated cell, a
    `SequenceClassifier`, an `Adder`, `row_classifier`). Arrays are JAX's default float."""

    @abc.abstractmethod
    def weight(
        self, key: PRNGKeyArray, shape: tuple[int, ...], hidden_size: int
    ) -> Float[Array, "..."]:
        """A weight array of `shape` of a layer with `hidden_size` units."""

    @abc.abstractmethod
    def bias(
        self, key: PRNGKeyArray, shape: tuple[int, ...], hidden_size: int
    ) -> Float[Array, "..."]:
        """A bias array of `shape` of a layer with `hidden_size` units."""

    @abc.abstractmethod
    def linear(self, in_features: int, out_features: int, *, key: PRNGKeyArray) -> eqx.nn.Linear:
        """A dense layer `W h + b` on `in_features` hidden units, e.g. a classifier's head."""


class PaperInit(AbstractInit):
    """§6.1: weights from `U(−1, 1)`, biases zero (a dense layer's weight drawn from its whole
    key)."""

    def weight(self, key, shape, hidden_size):
        del hidden_size
        return jax.random.uniform(key, shape, dtype=float, minval=-1.0, maxval=1.0)

    def bias(self, key, shape, hidden_size):
        del key, hidden_size
        return jnp.zeros(shape, dtype=float)

    def linear(self, in_features, out_features, *, key):
        layer = eqx.nn.Linear(in_features, out_features, key=key)
        arrays = (
            self.weight(key, layer.weight.shape, in_features),
            self.bias(key, layer.bias.shape, in_features),
        )
        return eqx.tree_at(lambda layer: (layer.weight, layer.bias), layer, arrays)


class PyTorchInit(AbstractInit):
    """PyTorch's `nn.LSTM` and `nn.Linear`: every array from `U(−1/√N, 1/√N)`. A dense layer is
    Equinox's `Linear` as built, which draws exactly that with `N = in_features`."""

    def weight(self, key, shape, hidden_size):
        bound = 1.0 / math.sqrt(hidden_size)
        return jax.random.uniform(key, shape, dtype=float, minval=-bound, maxval=bound)

    def bias(self, key, shape, hidden_size):
        return self.weight(key, shape, hidden_size)

    def linear(self, in_features, out_features, *, key):
        return eqx.nn.Linear(in_features, out_features, key=key)


INITIALISATIONS: dict[str, AbstractInit] = {"paper": PaperInit(), "pytorch": PyTorchInit()}
"""The command line's names of the initialisations (`--init paper`), resolved to the objects once,
in the experiments; the library takes only the objects."""


def check_init(init: AbstractInit) -> AbstractInit:
    """`init`, after checking that it is an `AbstractInit` (a name raises `TypeError`)."""
    if not isinstance(init, AbstractInit):
        hint = f" (INITIALISATIONS[{init!r}])" if isinstance(init, str) else ""
        raise TypeError(
            f"init must be an AbstractInit, e.g. PaperInit() or PyTorchInit(){hint}; got {init!r}"
        )
    return init
