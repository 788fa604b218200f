"""One description of a config dataclass, read by validation, the CLI, its help, records' JSON
and the tests.

A config is a frozen dataclass whose fields are annotated `int`, `float`, `bool`, `str`,
`tuple[T, ...]` of these, `T | None`, or another config dataclass (a part, nested rather than
flattened into prefixed names). Constraints are declared on the field with `typing.Annotated`:

    learning_rate: Annotated[float, Positive] = 0.01
    momentum: Annotated[float, InRange(0, 1, closed="left")] = 0.9
    omegas: Annotated[tuple[float, ...], Positive, MinLength(2)] = (0.25, 0.125)
    train: TrainConfig = TrainConfig(optimizer="rmsprop", epochs=150)  # a frozen part

On a tuple field `MinLength` bounds the number of entries and every other constraint holds for
each entry. `config_fields(cls)` reads the annotations and the docstring's `Attributes:` entries
once into `ConfigField`s; `flat_fields(cls)` lists every value-holding field, a part's under its
dotted path (`train.learning_rate`) with the default the config gives it. `check_fields`, called
first in `__post_init__`, checks each value's type and constraints, parts' recursively, and
raises `ConfigError` naming the field (`Config.train.learning_rate`), the value and the rule.
`replace_fields` is `dataclasses.replace` by dotted path and `config_from_json` reads a config
back from its JSON form. Rules between fields (a multiple of another field, one bound below
another) stay as code in `__post_init__`.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from memdyn._docstrings import field_docs
from memdyn._errors import ConfigError


class Constraint(abc.ABC):
    """A rule one value of a config field obeys, declared with `Annotated[T, constraint]`."""

    @abc.abstractmethod
    def holds(self, value: Any) -> bool:
        """Whether `value` obeys the rule."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule as the help and the error messages show it: `> 0`, `in [0, 1)`."""


def _number(bound: float) -> str:
    return repr(bound) if isinstance(bound, float) and not bound.is_integer() else f"{bound:g}"


@dataclasses.dataclass(frozen=True)
class GreaterThan(Constraint):
    """`value > bound`."""

    bound: float

    def holds(self, value: Any) -> bool:
        return value > self.bound

    def describe(self) -> str:
        return f"> {_number(self.bound)}"


@dataclasses.dataclass(frozen=True)
class AtLeast(Constraint):
    """`value >= bound`."""

    bound: float

    def holds(self, value: Any) -> bool:
        return value >= self.bound

    def describe(self) -> str:
        return f">= {_number(self.bound)}"


@dataclasses.dataclass(frozen=True)
class InRange(Constraint):
    """`lower <= value <= upper`, an end left open by `closed` ("both", "left", "right" or
    "neither": which ends are included)."""

    lower: float
    upper: float
    closed: str = "both"

    def __post_init__(self):
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be both, left, right or neither; got {self.closed!r}")

    def holds(self, value: Any) -> bool:
        above = value >= self.lower if self.closed in ("both", "left") else value > self.lower
        below = value <= self.upper if self.closed in ("both", "right") else value < self.upper
        return bool(above and below)

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"in {left}{_number(self.lower)}, {_number(self.upper)}{right}"


@dataclasses.dataclass(frozen=True, eq=False)
class OneOf(Constraint):
    """`value in choices`; `choices` is read when checking, so a registry that grows (cells
    registered later) is honoured."""

    choices: Collection

    def holds(self, value: Any) -> bool:
        return value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.choices))


@dataclasses.dataclass(frozen=True)
class MinLength(Constraint):
    """A tuple field holds at least `length` entries."""

    length: int

    def holds(self, value: Any) -> bool:
        return len(value) >= self.length

    def describe(self) -> str:
        return f"at least {self.length} {'entry' if self.length == 1 else 'entries'}"


Positive = GreaterThan(0)
NonNegative = AtLeast(0)

_CHECKED = (int, float, bool, str)


@dataclasses.dataclass(frozen=True)
class ConfigField:
    """One field of a config, as its annotation describes it.

    Attributes:
        name: the field's name; in `flat_fields`, its dotted path (`train.learning_rate`).
        kind: `int`, `float`, `bool` or `str` (each entry's, for a tuple), or the config
            dataclass of a nested part; another annotation is kept as written and its values are
            not checked.
        default: the default value (`dataclasses.MISSING` where there is none).
        sequence: the field is a `tuple[kind, ...]`.
        optional: `None` is allowed (`kind | None`).
        constraints: what each value (each entry, for a tuple) obeys.
        length: what a tuple's number of entries obeys (`MinLength`).
        doc: the field's entry in the `Attributes:` section of its class's docstring (empty if
            none), what the CLI's help shows.
    """

    name: str
    kind: Any
    default: Any
    sequence: bool = False
    optional: bool = False
    constraints: tuple[Constraint, ...] = ()
    length: tuple[Constraint, ...] = ()
    doc: str = ""

    @property
    def nested(self) -> bool:
        """The field holds a config of its own (a part), which `config_fields(kind)` describes;
        a tuple of dataclasses is not one (its entries are kept as given)."""
        return (
            isinstance(self.kind, type)
            and dataclasses.is_dataclass(self.kind)
            and not self.sequence
        )

    def rule(self) -> str:
        """The constraints in words (`> 0`; `at least 2 entries, each > 0`), empty if none."""
        each = ", ".join(c.describe() for c in self.constraints)
        if not self.sequence:
            return each
        parts = [c.describe() for c in self.length] + ([f"each {each}"] if each else [])
        return ", ".join(parts)

    def check(self, owner: str, value: Any) -> None:
        """Raise `ConfigError` naming `owner.name` unless `value` fits the type and the rule."""
        name = f"{owner}.{self.name}"
        if value is None and self.optional:
            return
        if self.nested:
            if not isinstance(value, self.kind):
                raise ConfigError(f"{name} must be a {self.kind.__name__}; got {value!r}")
            for field in config_fields(self.kind):
                field.check(name, getattr(value, field.name))
            return
        if not self.sequence:
            _check_type(name, value, self.kind)
            _check_rules(name, value, self.constraints)
            return
        if not isinstance(value, tuple | list):
            raise ConfigError(f"{name} must be a sequence; got {value!r}")
        for i, item in enumerate(value):
            _check_type(f"{name}[{i}]", item, self.kind)
        for constraint in self.length:
            if not constraint.holds(value):
                raise ConfigError(f"{name} must have {constraint.describe()}; got {value!r}")
        bad = [c for c in self.constraints if not all(c.holds(item) for item in value)]
        if bad:
            raise ConfigError(f"{name} entries must each be {bad[0].describe()}; got {value!r}")

    def from_json(self, value: Any) -> Any:
        """A value as a JSON record stores it, back as the config holds it: lists become
        tuples, `None` in a float field NaN (JSON has no NaN)."""
        if self.sequence and isinstance(value, list):
            return tuple(self._scalar_from_json(item) for item in value)
        return self._scalar_from_json(value)

    def _scalar_from_json(self, value: Any) -> Any:
        return math.nan if self.kind is float and value is None and not self.optional else value


def _check_type(name: str, value: Any, kind: Any) -> None:
    if kind is bool:
        if not isinstance(value, bool | np.bool_):
            raise ConfigError(f"{name} must be True or False; got {value!r}")
    elif kind is int:
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
            raise ConfigError(f"{name} must be an integer; got {value!r}")
    elif kind is float:
        real = isinstance(value, int | float | np.integer | np.floating)
        if isinstance(value, bool | np.bool_) or not real or not _finite_number(value):
            raise ConfigError(f"{name} must be a finite number; got {value!r}")
    elif kind is str and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string; got {value!r}")


def _check_rules(name: str, value: Any, constraints: tuple[Constraint, ...]) -> None:
    for constraint in constraints:
        if not constraint.holds(value):
            raise ConfigError(f"{name} must be {constraint.describe()}; got {value!r}")


def _finite_number(value: Any) -> bool:
    # A Python int beyond int64 is refused: NumPy cannot take it (`np.isfinite(10**30)` raises
    # TypeError), so no range check could either; 1e30 is fine.
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return False
    return bool(np.isfinite(value))


def _strip(annotation: Any) -> tuple[Any, tuple[Constraint, ...]]:
    """An annotation without its `Annotated` layer, and the constraints that layer declares."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *extras = typing.get_args(annotation)
        return base, tuple(e for e in extras if isinstance(e, Constraint))
    return annotation, ()


def _describe(field: dataclasses.Field, annotation: Any, doc: str) -> ConfigField:
    default = field.default
    if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    annotation, outer = _strip(annotation)
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(inner) < len(typing.get_args(annotation))
        if len(inner) != 1:
            return ConfigField(field.name, annotation, default, optional=optional, doc=doc)
        annotation, more = _strip(inner[0])
        outer += more
    sequence = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and len(args) == 2 and args[1] is Ellipsis:
        sequence = True
        annotation, each = _strip(args[0])
        outer += each
    elif typing.get_origin(annotation) is not None:
        annotation = typing.get_origin(annotation)  # a fixed tuple, a list: only its container
    length = tuple(c for c in outer if isinstance(c, MinLength))
    constraints = tuple(c for c in outer if not isinstance(c, MinLength))
    if length and not sequence:
        raise TypeError(f"{field.name}: MinLength applies to tuple[T, ...] fields only")
    return ConfigField(
        field.name, annotation, default, sequence, optional, constraints, length, doc
    )


@functools.cache
def config_fields(config_cls: type) -> tuple[ConfigField, ...]:
    """The description of every field of the config dataclass `config_cls`, from its
    annotations and its docstring's `Attributes:` entries (those of its bases included, a
    subclass's winning). A nested part is one field whose `kind` is its class."""
    try:
        hints = typing.get_type_hints(config_cls, include_extras=True)
    except (NameError, TypeError) as error:  # never a config whose rules go silently unchecked
        raise TypeError(
            f"{config_cls.__name__}'s annotations do not resolve ({error}), so its fields' types "
            "and constraints cannot be checked: import the names they use in its module"
        ) from error
    docs = field_docs(config_cls)
    return tuple(
        _describe(f, hints.get(f.name, f.type), docs.get(f.name, ""))
        for f in dataclasses.fields(config_cls)
    )


@functools.cache
def flat_fields(config_cls: type) -> tuple[ConfigField, ...]:
    """Every value-holding field of `config_cls`, nested parts' fields under their dotted paths
    (`train.learning_rate`), in declaration order: what the CLI makes flags of. A part's field
    takes its default from this config's default part (where an experiment gives the paper's
    settings, e.g. `train.optimizer` "rmsprop") and its documentation from a dotted entry of
    this class's docstring where there is one, else from the part's own."""
    docs = field_docs(config_cls)
    flat = []
    for field in config_fields(config_cls):
        if not field.nested:
            flat.append(field)
            continue
        for inner in flat_fields(field.kind):
            path = f"{field.name}.{inner.name}"
            default = inner.default
            if field.default is not dataclasses.MISSING:
                default = functools.reduce(getattr, inner.name.split("."), field.default)
            doc = docs.get(path, inner.doc)
            flat.append(dataclasses.replace(inner, name=path, default=default, doc=doc))
    return tuple(flat)


def check_fields(config: Any) -> None:
    """Check every field of a config dataclass against its description (`config_fields`): `int`
    fields hold integers (not floats or bools), `float` fields finite real numbers (an integer
    beyond int64 is refused: write it as a float), `bool` fields bools, `str` fields strings,
    tuples sequences of such, a part an instance of its class whose fields are checked in turn,
    and each value its declared constraints. Raises `ConfigError` naming the field by its
    dotted path (`Config.train.learning_rate`). Call it first in `__post_init__`."""
    owner = type(config).__name__
    for field in config_fields(type(config)):
        field.check(owner, getattr(config, field.name))


def replace_fields(config: Any, values: Mapping[str, Any]) -> Any:
    """`dataclasses.replace` through nested parts: `values` maps field names or dotted paths
    (`"train.learning_rate"`) to new values. Each value is checked against its field's
    description first, so a bad one raises `ConfigError` naming its dotted path
    (`Config.train.learning_rate`); a rule between a part's fields that fails names the part.
    An unknown name is a `TypeError`, as `dataclasses.replace` gives."""
    return _replace(config, values, type(config).__name__)


def _replace(config: Any, values: Mapping[str, Any], owner: str) -> Any:
    fields = {field.name: field for field in config_fields(type(config))}
    direct: dict[str, Any] = {}
    inner: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        head, dot, rest = key.partition(".")
        field = fields.get(head)
        if field is None or (dot and not field.nested):
            raise TypeError(f"{owner} has no field {key!r}")
        if dot:
            inner.setdefault(head, {})[rest] = value
        else:
            field.check(owner, value)
            direct[head] = value
    for head, part_values in inner.items():
        part = direct.get(head, getattr(config, head))
        try:
            direct[head] = _replace(part, part_values, f"{owner}.{head}")
        except ConfigError as error:
            if str(error).startswith(f"{owner}.{head}."):
                raise
            raise ConfigError(f"{owner}.{head}: {error}") from error
    return dataclasses.replace(config, **direct)


def config_from_json(config_cls: type, values: Any, *, where: str = "config") -> Any:
    """The config of class `config_cls` that `to_jsonable` wrote as `values` (a part as a JSON
    object of its own; `ConfigField.from_json` turns lists back into tuples). Every field must
    be present and no other: a missing or unknown name is a `ConfigError` naming its dotted
    path under `where`, never a default filled in silently."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must be a JSON object of {config_cls.__name__}'s fields")
    fields = config_fields(config_cls)
    names = [field.name for field in fields]
    missing = [f"{where}.{name}" for name in names if name not in values]
    unknown = [f"{where}.{name}" for name in values if name not in names]
    if missing or unknown:
        problems = [f"no field {', '.join(missing)}"] if missing else []
        problems += [f"unknown field {', '.join(unknown)}"] if unknown else []
        raise ConfigError(f"{where} does not fit {config_cls.__name__}: {'; '.join(problems)}")
    built = {}
    for field in fields:
        value = values[field.name]
        if field.nested and value is not None:
            built[field.name] = config_from_json(field.kind, value, where=f"{where}.{field.name}")
        else:
            built[field.name] = field.from_json(value)
    return config_cls(**built)
