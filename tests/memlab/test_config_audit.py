"""Bad-input audit of every experiment config, read from the one description of its fields
(`memdyn.internal.config_fields`): each field rejects NaN/inf and wrong types, and each declared
constraint rejects a value that breaks it, naming the field (the CLI builds these configs, so
this covers every subcommand's flags)."""

import dataclasses

import pytest

from memdyn import ConfigError, TrainConfig
from memdyn.internal import (
    AtLeast,
    GreaterThan,
    InRange,
    MinLength,
    OneOf,
    check_fields,
    config_fields,
)
from memlab._registry import experiments_of

CONFIGS = [
    experiment.config for package in ("curse", "decaynet") for experiment in experiments_of(package)
] + [TrainConfig]


def _bad_scalars(kind):
    """Values of the wrong type for a field of this kind (empty: not audited)."""
    return {
        float: [float("nan"), float("inf"), "1.0", True],
        int: [2.5, float("nan"), True],
        bool: [1, "yes"],
    }.get(kind, [])


def _breaking(constraint, kind):
    """A value of the right type that breaks `constraint` (None: none is constructed)."""
    step = 1 if kind is int else 0.5
    if isinstance(constraint, GreaterThan):
        return kind(constraint.bound)
    if isinstance(constraint, AtLeast):
        return kind(constraint.bound - step)
    if isinstance(constraint, InRange):
        low = constraint.lower if constraint.closed in ("right", "neither") else None
        return kind(constraint.lower - step) if low is None else kind(low)
    if isinstance(constraint, OneOf):
        return "no such choice" if kind is str else None
    return None


def _bad_values(field):
    """Values that must be rejected for this field: wrong types, then broken constraints."""
    bad = list(_bad_scalars(field.kind))
    bad += [b for c in field.constraints if (b := _breaking(c, field.kind)) is not None]
    if not field.sequence:
        return bad
    good = field.default[:1] or ()
    bad = [(*good, b) for b in bad]
    return bad + [good[: c.length - 1] for c in field.length if isinstance(c, MinLength)]


CASES = [
    pytest.param(cls, field.name, bad, id=f"{cls.__name__}.{field.name}={bad!r}")
    for cls in CONFIGS
    for field in config_fields(cls)
    for bad in _bad_values(field)
]


def test_every_config_is_audited():
    assert len(CONFIGS) >= 13
    assert len(CASES) > 200
    constrained = [f for cls in CONFIGS for f in config_fields(cls) if f.constraints or f.length]
    assert len(constrained) > 50


@pytest.mark.parametrize("cls, name, bad", CASES)
def test_config_rejects_bad_values_naming_the_field(cls, name, bad):
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{name}\b"):
        dataclasses.replace(cls(), **{name: bad})


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_and_quick_pass(cls):
    config = cls()
    check_fields(config)
    if hasattr(config, "quick"):
        check_fields(config.quick())


def test_constraint_messages_name_field_value_and_rule():
    with pytest.raises(ConfigError, match=r"TrainConfig\.momentum must be in \[0, 1\); got 1\.0"):
        TrainConfig(momentum=1.0)
    with pytest.raises(ConfigError, match=r"TrainConfig\.optimizer must be one of .*adam"):
        TrainConfig(optimizer="sgd")


def test_config_fields_is_the_description_help_and_json_read():
    fields = {f.name: f for f in config_fields(TrainConfig)}
    assert fields["learning_rate"].rule() == "> 0"
    assert fields["batch_size"].rule() == ">= 1"
    assert fields["learning_rate"].default == 0.01
    assert fields["batch_size"].from_json(64) == 64


def test_a_config_whose_annotations_do_not_resolve_is_refused():
    """Never a config whose rules go silently unchecked: an annotation naming something its
    module does not define is a TypeError naming the class, not an unchecked field."""

    @dataclasses.dataclass(frozen=True)
    class Broken:
        rate: "Annotated[float, Undefined]" = 1.0  # noqa: F821

    with pytest.raises(TypeError, match="Broken's annotations do not resolve"):
        config_fields(Broken)
