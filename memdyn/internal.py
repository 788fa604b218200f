"""Infrastructure the papers' packages and the lab share, as `eqx.internal` is Equinox's: stable
enough to build on, but not what a researcher calls for an analysis.

- Validation (`check_strategy`: the `TypeError` for a name where a strategy object goes):
  structural checks in Python at trace time, value checks with `eqx.error_if` so they
  hold under `jit` and `vmap` (`check_*`, `as_float_array`), raising `ConfigError` for sizes,
  counts and choices.
- Config schema: constraints declared on config fields with `typing.Annotated` (`Positive`,
  `NonNegative`, `GreaterThan`, `AtLeast`, `InRange`, `OneOf`, `MinLength`, all `Constraint`s);
  `config_fields` reads a config class (annotations and documentation) into `ConfigField`s, the
  one description that `check_fields` (validation), the CLI (flags and help), records (JSON) and
  the tests read; nested parts are described recursively (`flat_fields`: every value by dotted
  path, `replace_fields`: `dataclasses.replace` by dotted path, `config_from_json`).
- Files: `atomic_write_bytes`, `write_json`, `to_jsonable` (what checkpoints and records share),
  `config_fingerprint` (which config a checkpoint belongs to).
- Pytrees: `tree_all_finite`, the one "every entry finite" reduction (training, meta-training,
  value checks, flows).
- Progress bars: `progress`, `close_progress_bars`.
- The stack: `versions`, `stack_verdict` (what a record stores of `memdyn.doctor`).
- Training: `check_optimizer`, the `TypeError` for an optimiser that is not an Optax
  `GradientTransformation` (a name or a learning rate), for functions that take one.
- Data parallelism: `batch_shards`, how many devices the batch of the step being traced is split
  over, for recurrent cores that accumulate their weight gradients per shard.
"""

from memdyn._checkpoint import config_fingerprint
from memdyn._data_parallel import batch_shards
from memdyn._doctor import stack_verdict, versions
from memdyn._files import atomic_write_bytes, to_jsonable, write_json
from memdyn._progress import close_progress_bars, progress
from memdyn._schema import (
    AtLeast,
    ConfigField,
    Constraint,
    GreaterThan,
    InRange,
    MinLength,
    NonNegative,
    OneOf,
    Positive,
    check_fields,
    config_fields,
    config_from_json,
    flat_fields,
    replace_fields,
)
from memdyn._tree import tree_all_finite
from memdyn._validate import (
    as_float_array,
    check_count,
    check_in,
    check_optimizer,
    check_positive,
    check_shape,
    check_strategy,
)

__all__ = [
    "AtLeast",
    "ConfigField",
    "Constraint",
    "GreaterThan",
    "InRange",
    "MinLength",
    "NonNegative",
    "OneOf",
    "Positive",
    "as_float_array",
    "atomic_write_bytes",
    "batch_shards",
    "check_count",
    "check_fields",
    "check_in",
    "check_optimizer",
    "check_positive",
    "check_shape",
    "check_strategy",
    "close_progress_bars",
    "config_fields",
    "config_fingerprint",
    "config_from_json",
    "flat_fields",
    "progress",
    "replace_fields",
    "stack_verdict",
    "to_jsonable",
    "tree_all_finite",
    "versions",
    "write_json",
]
