"""DecayNet: A Study on the Cell States of LSTMs (ICLR 2019 submission), in JAX.

The public API; the implementation lives in private modules.

- Cells (`_cells`): `AbstractGatedCell`, a `memdyn.AbstractCell` (subclass it for a new cell:
  `label`, `initial_carry`, `forget_gate`), `LSTMCell` (System 1), `DecayCell` (System 2) and its
  `forget_polar_activation`; `CellState`, `Trajectory`; `scan_cell`, the one scan that runs a
  cell with a normalisation.
- Initialisations (`_initialisation`), strategy objects passed as `init`: `AbstractInit`,
  `PaperInit` (§6.1), `PyTorchInit`; `INITIALISATIONS`, the command line's names for them.
- Normalisations (`_normalisation`): `AbstractNormalisation`, `NoNormalisation`,
  `RecurrentBatchNorm` (Cooijmans et al.), `LayerNormalisation` (App. D).
- Classifiers (`_model`): `AbstractSequenceClassifier`, `SequenceClassifier` (§6.1, App. C: a
  gated cell in `scan_cell`), `CellClassifier` (any `memdyn.AbstractCell`, e.g. `memdyn.GRUCell`,
  `memdyn.LRUCell`, through `memdyn.unroll`), `row_classifier` (Table 2's, either kind),
  `count_parameters`, `parameter_count` (the paper's count).
- Data (`_data`): `load` (MNIST, Fashion-MNIST; `Split`), `locate`, `find_local`,
  `as_sequences` (row, pixel and permuted views), `permutation`, `DATASETS`,
  `DEFAULT_NORMALISATION`.
- Binary addition (`_addition`, App. B): `Adder`, `addition_batch`, `AdditionBatch`, `add`,
  `to_bits`, `from_bits`, `operand_limits`, `sample_operands`, `is_held_out`,
  `held_out_operands`, `predict_digits`, `digit_accuracy`, `count_increases`,
  `train_until_exact`, `TrainingHistory`.
- Cobwebs (`_cobweb`, §3, App. A): `cobweb`, `Cobweb`, `cell_state_map`.
- Learning to learn (`_learned`, §6.2, App. D-E): `LearnedOptimizer`, its learning rates, strategy
  objects passed as `rates` (`AbstractRates`, `LinearRates`, `SoftplusRates`),
  `learned_optimizer` (an Optax transformation), `preprocess_gradient`, `rollout`,
  `loss_curves`, `meta_train`, and the optimisee `init_mlp`, `mlp_loss`, `mlp_parameter_count`.
- Training takes Optax transformations (`train_until_exact(optimizer=...)`,
  `meta_train(optimizer=...)`), never learning rates or optimiser names.

Experiments (`decaynet.experiments`, one module per table or figure, with the command line's
name → cell map), figures (`decaynet.plots`) and the command line (`decaynet.cli`) sit on top.
"""

from decaynet._addition import (
    Adder,
    AdditionBatch,
    TrainingHistory,
    add,
    addition_batch,
    count_increases,
    digit_accuracy,
    from_bits,
    held_out_operands,
    is_held_out,
    operand_limits,
    predict_digits,
    sample_operands,
    to_bits,
    train_until_exact,
)
from decaynet._cells import (
    AbstractGatedCell,
    CellState,
    DecayCell,
    LSTMCell,
    Trajectory,
    forget_polar_activation,
    scan_cell,
)
from decaynet._cobweb import Cobweb, cell_state_map, cobweb
from decaynet._data import (
    DATASETS,
    DEFAULT_NORMALISATION,
    Split,
    as_sequences,
    find_local,
    load,
    locate,
    permutation,
)
from decaynet._initialisation import INITIALISATIONS, AbstractInit, PaperInit, PyTorchInit
from decaynet._learned import (
    AbstractRates,
    LearnedOptimizer,
    LinearRates,
    SoftplusRates,
    init_mlp,
    learned_optimizer,
    loss_curves,
    meta_train,
    mlp_loss,
    mlp_parameter_count,
    preprocess_gradient,
    rollout,
)
from decaynet._model import (
    AbstractSequenceClassifier,
    CellClassifier,
    SequenceClassifier,
    count_parameters,
    parameter_count,
    row_classifier,
)
from decaynet._normalisation import (
    AbstractNormalisation,
    LayerNormalisation,
    NoNormalisation,
    RecurrentBatchNorm,
)
from decaynet._recurrence import AbstractBackward, AutodiffBackward, FusedBackward
from decaynet._train import classifier_loss, evaluate

__all__ = [
    "find_local",
    "row_classifier",
    "classifier_loss",
    "evaluate",
    "DATASETS",
    "DEFAULT_NORMALISATION",
    "INITIALISATIONS",
    "AbstractBackward",
    "AbstractGatedCell",
    "AbstractInit",
    "AutodiffBackward",
    "FusedBackward",
    "AbstractSequenceClassifier",
    "CellClassifier",
    "AbstractNormalisation",
    "AbstractRates",
    "AdditionBatch",
    "Adder",
    "CellState",
    "Cobweb",
    "DecayCell",
    "LSTMCell",
    "LayerNormalisation",
    "LearnedOptimizer",
    "LinearRates",
    "NoNormalisation",
    "PaperInit",
    "PyTorchInit",
    "RecurrentBatchNorm",
    "SequenceClassifier",
    "SoftplusRates",
    "Split",
    "TrainingHistory",
    "Trajectory",
    "add",
    "addition_batch",
    "as_sequences",
    "cell_state_map",
    "cobweb",
    "count_increases",
    "count_parameters",
    "digit_accuracy",
    "forget_polar_activation",
    "from_bits",
    "held_out_operands",
    "init_mlp",
    "is_held_out",
    "learned_optimizer",
    "load",
    "locate",
    "loss_curves",
    "meta_train",
    "mlp_loss",
    "mlp_parameter_count",
    "operand_limits",
    "parameter_count",
    "permutation",
    "predict_digits",
    "preprocess_gradient",
    "rollout",
    "sample_operands",
    "scan_cell",
    "to_bits",
    "train_until_exact",
]
