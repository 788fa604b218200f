"""Bad-input audit of every experiment config: each numeric field rejects NaN/inf and wrong types,
naming the field (the CLI builds these configs, so this covers every subcommand's flags)."""

import dataclasses
import typing

import pytest

from memdyn import TrainConfig
from memdyn.internal import check_fields
from memlab._registry import experiments_of

CONFIGS = [
    experiment.config for package in ("curse", "decaynet") for experiment in experiments_of(package)
] + [TrainConfig]


def _bad_values(annotation):
    """Values that must be rejected for a field of this annotation (empty: not audited)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple and args and args[-1] is Ellipsis:
        return [(bad,) for bad in _bad_values(args[0])]
    if annotation is float:
        return [float("nan"), float("inf"), "1.0", True]
    if annotation is int:
        return [2.5, float("nan"), True]
    if annotation is bool:
        return [1, "yes"]
    return []


CASES = [
    pytest.param(cls, field.name, bad, id=f"{cls.__name__}.{field.name}={bad!r}")
    for cls in CONFIGS
    for field in dataclasses.fields(cls)
    for bad in _bad_values(typing.get_type_hints(cls)[field.name])
]


def test_every_config_is_audited():
    assert len(CONFIGS) >= 13
    assert len(CASES) > 200


@pytest.mark.parametrize("cls, name, bad", CASES)
def test_config_rejects_bad_values_naming_the_field(cls, name, bad):
    with pytest.raises(ValueError, match=name):
        dataclasses.replace(cls(), **{name: bad})


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_and_quick_pass(cls):
    config = cls()
    check_fields(config)
    if hasattr(config, "quick"):
        check_fields(config.quick())
