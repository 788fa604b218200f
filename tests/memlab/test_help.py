"""Field documentation for `--help`: every experiment config documents every field (a nested
part's fields by dotted path included), and the `Attributes:` parser of `memdyn._docstrings`
reads Google-style sections as intended."""

from __future__ import annotations

import dataclasses

import pytest

from memdyn._docstrings import attributes_section, field_docs
from memdyn.internal import config_fields, flat_fields
from memlab._registry import experiments_of

EXPERIMENTS = [
    (package, experiment)
    for package in ("curse", "decaynet")
    for experiment in experiments_of(package)
]
IDS = [f"{package}-{experiment.name}" for package, experiment in EXPERIMENTS]


def undocumented_fields(config_cls: type) -> list[str]:
    """The fields of `config_cls` (its parts and every value by dotted path) without a doc."""
    fields = config_fields(config_cls) + flat_fields(config_cls)
    return list(dict.fromkeys(field.name for field in fields if not field.doc))


@pytest.mark.parametrize(("package", "experiment"), EXPERIMENTS, ids=IDS)
def test_every_config_field_is_documented(package, experiment):
    assert undocumented_fields(experiment.config) == []


@pytest.mark.parametrize(("package", "experiment"), EXPERIMENTS, ids=IDS)
def test_no_entry_names_a_missing_field(package, experiment):
    """A stale or misspelt entry would document nothing (`field_docs` drops it silently); a
    dotted entry must name a field of a part."""
    config = experiment.config
    names = {f.name for f in config_fields(config)} | {f.name for f in flat_fields(config)}
    for cls in config.__mro__:
        if dataclasses.is_dataclass(cls) and cls.__doc__:
            assert set(attributes_section(cls.__doc__)) <= names, cls.__name__


@dataclasses.dataclass(frozen=True)
class _Base:
    """A base config.

    Attributes:
        rtol, atol: solver tolerances
            (relative, absolute).
        seeds: networks trained at once; 0 is not allowed.
        steps: base text, replaced below.

    Returns:
        nothing: a section that is not part of the attributes.
    """

    rtol: float = 1e-8
    atol: float = 1e-10
    seeds: int = 1
    steps: int = 10


@dataclasses.dataclass(frozen=True)
class _Child(_Base):
    """A derived config.

    Attributes:
        steps: optimiser steps; the subclass wins.
        extra (int): a field with a type in parentheses.
    """

    extra: int = 0
    undocumented: float = 0.0


def test_multi_name_entry_and_continuation_line():
    docs = field_docs(_Base)
    assert docs["rtol"] == "solver tolerances (relative, absolute)."
    assert docs["atol"] == docs["rtol"]
    assert docs["seeds"] == "networks trained at once; 0 is not allowed."


def test_following_section_is_not_swallowed():
    docs = field_docs(_Base)
    assert docs["steps"] == "base text, replaced below."
    assert "nothing" not in attributes_section(_Base.__doc__)
    assert all("section" not in text for text in docs.values())


def test_subclass_entry_wins_and_base_entries_are_inherited():
    docs = field_docs(_Child)
    assert docs["steps"] == "optimiser steps; the subclass wins."
    assert docs["seeds"] == "networks trained at once; 0 is not allowed."
    assert docs["extra"] == "a field with a type in parentheses."


def test_field_without_entry_is_reported():
    assert undocumented_fields(_Child) == ["undocumented"]
    assert "undocumented" not in field_docs(_Child)
    assert undocumented_fields(_Base) == []


def test_docstring_without_attributes_section_documents_nothing():
    @dataclasses.dataclass(frozen=True)
    class Bare:
        """No section here.

        Args:
            size: not an attribute entry.
        """

        size: int = 1

    assert field_docs(Bare) == {}
    assert undocumented_fields(Bare) == ["size"]


def test_section_on_the_first_line_and_entries_for_non_fields():
    @dataclasses.dataclass(frozen=True)
    class Compact:
        """Attributes:
        width: model width m.
        gone: documents a field that no longer exists.
        """

        width: int = 1

    assert field_docs(Compact) == {"width": "model width m."}


@dataclasses.dataclass(frozen=True)
class _Part:
    """A part.

    Attributes:
        rate: the part's own words.
        steps: steps of the part.
    """

    rate: float = 0.1
    steps: int = 5


@dataclasses.dataclass(frozen=True)
class _Whole:
    """A config with a part.

    Attributes:
        part: the nested part.
        part.rate: the whole's words for its part's rate.
        size: a plain field.
    """

    part: _Part = _Part(rate=0.5)
    size: int = 1


def test_a_dotted_entry_documents_a_parts_field_as_the_config_uses_it():
    fields = {field.name: field for field in flat_fields(_Whole)}
    assert list(fields) == ["part.rate", "part.steps", "size"]
    assert fields["part.rate"].doc == "the whole's words for its part's rate."
    assert fields["part.steps"].doc == "steps of the part."  # the part's own entry
    assert fields["part.rate"].default == 0.5  # the whole's default part, not _Part's 0.1
    assert config_fields(_Whole)[0].doc == "the nested part."
    assert undocumented_fields(_Whole) == []
