"""Bad-input audit of every experiment config, read from the one description of its fields
(`memdyn.internal.flat_fields`: a nested part's fields by dotted path): each field rejects NaN/inf
and wrong types, and each declared constraint rejects a value that breaks it, naming the field
by its path (the CLI builds these configs through `replace_fields`, so this covers every
subcommand's flags)."""

import dataclasses
import json
from typing import Annotated

import pytest

from decaynet.experiments import table2
from memdyn import ConfigError, TrainConfig
from memdyn.internal import (
    AtLeast,
    GreaterThan,
    InRange,
    MinLength,
    OneOf,
    Positive,
    check_fields,
    config_fields,
    config_from_json,
    flat_fields,
    replace_fields,
    to_jsonable,
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
    for field in flat_fields(cls)
    for bad in _bad_values(field)
]


def test_every_config_is_audited():
    assert len(CONFIGS) >= 13
    assert len(CASES) > 200
    constrained = [f for cls in CONFIGS for f in flat_fields(cls) if f.constraints or f.length]
    assert len(constrained) > 50
    nested = {name for _, name, _ in (case.values for case in CASES) if "." in name}
    assert {"train.learning_rate", "lorenz96.forcing_scale", "density.sigma_fraction"} <= nested


@pytest.mark.parametrize("cls, name, bad", CASES)
def test_config_rejects_bad_values_naming_the_field(cls, name, bad):
    path = name.replace(".", r"\.")
    with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{path}\b"):
        replace_fields(cls(), {name: bad})


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


@dataclasses.dataclass(frozen=True)
class _Part:
    """Attributes:
    rate: a rate.
    sizes: some sizes.
    """

    rate: Annotated[float, Positive] = 0.1
    sizes: Annotated[tuple[int, ...], AtLeast(1)] = (1, 2)

    def __post_init__(self):
        check_fields(self)


@dataclasses.dataclass(frozen=True)
class _Whole:
    """Attributes:
    part: a part.
    seed: a seed.
    """

    part: _Part = _Part()
    seed: int = 0

    def __post_init__(self):
        check_fields(self)


def test_a_bad_nested_value_names_its_dotted_path():
    with pytest.raises(ConfigError, match=r"_Whole\.part\.rate must be > 0; got -1\.0"):
        replace_fields(_Whole(), {"part.rate": -1.0})
    with pytest.raises(ConfigError, match=r"_Whole\.part\.sizes entries must each be >= 1"):
        replace_fields(_Whole(), {"part.sizes": (1, 0)})
    with pytest.raises(ConfigError, match=r"_Whole\.part must be a _Part; got 3"):
        _Whole(part=3)
    with pytest.raises(TypeError, match="_Whole.part has no field 'speed'"):
        replace_fields(_Whole(), {"part.speed": 1.0})
    with pytest.raises(TypeError, match="_Whole has no field 'seed.x'"):
        replace_fields(_Whole(), {"seed.x": 1})
    # check_fields walks into a part that escaped its own check (built with object.__setattr__)
    part = _Part()
    object.__setattr__(part, "rate", float("nan"))
    with pytest.raises(ConfigError, match=r"_Whole\.part\.rate must be a finite number"):
        check_fields(_Whole(part=part))


def test_replace_fields_rebuilds_only_the_named_paths():
    whole = replace_fields(_Whole(), {"part.rate": 0.5, "seed": 3})
    assert whole == _Whole(part=_Part(rate=0.5), seed=3)
    assert replace_fields(whole, {"part": _Part(sizes=(4,))}).part == _Part(sizes=(4,))
    # a whole part and one of its fields: the field applies to the given part
    assert replace_fields(whole, {"part": _Part(), "part.rate": 2.0}).part == _Part(rate=2.0)


def test_a_rule_between_a_parts_fields_names_the_part():
    with pytest.raises(ConfigError, match=r"^Config\.train: checkpoint_every \(3\) must be a mul"):
        replace_fields(table2.Config(), {"train.checkpoint_every": 3})


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_json_round_trip_of_defaults_and_quick_configs(cls):
    """`to_jsonable` (what records store) and `config_from_json` (what `memdyn rerun` reads)
    give the config back, nested parts and tuples of floats included."""
    configs = [cls()] + ([cls().quick()] if hasattr(cls, "quick") else [])
    for config in configs:
        stored = json.loads(json.dumps(to_jsonable(config)))
        assert config_from_json(cls, stored) == config


def test_json_of_a_nested_config_is_nested_and_read_strictly():
    stored = json.loads(json.dumps(to_jsonable(_Whole(part=_Part(sizes=(3,))))))
    assert stored == {"part": {"rate": 0.1, "sizes": [3]}, "seed": 0}
    assert config_from_json(_Whole, stored) == _Whole(part=_Part(sizes=(3,)))
    flat = {"part_rate": 0.1, "part_sizes": [3], "seed": 0}  # how a flat config would store it
    with pytest.raises(ConfigError, match=r"no field config\.part; unknown field config\.part_"):
        config_from_json(_Whole, flat)
    with pytest.raises(ConfigError, match=r"config\.part does not fit _Part: no field config\."):
        config_from_json(_Whole, {"part": {"rate": 0.1}, "seed": 0})
    with pytest.raises(ConfigError, match=r"config\.part must be a JSON object"):
        config_from_json(_Whole, {"part": [0.1, [3]], "seed": 0})


def test_a_tuple_of_dataclasses_is_a_value_not_a_part():
    @dataclasses.dataclass(frozen=True)
    class Many:
        parts: tuple[_Part, ...] = (_Part(),)

    (field,) = flat_fields(Many)
    assert field.name == "parts" and field.sequence and not field.nested
    check_fields(Many())
