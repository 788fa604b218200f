"""Field documentation for `--help`: every experiment config documents every field, and the
`Attributes:` parser of `memlab._help` reads Google-style sections as intended."""

from __future__ import annotations

import dataclasses

import pytest

from memlab._help import _attributes_section, field_docs, undocumented_fields
from memlab._registry import experiments_of

EXPERIMENTS = [
    (package, experiment)
    for package in ("curse", "decaynet")
    for experiment in experiments_of(package)
]
IDS = [f"{package}-{experiment.name}" for package, experiment in EXPERIMENTS]


@pytest.mark.parametrize(("package", "experiment"), EXPERIMENTS, ids=IDS)
def test_every_config_field_is_documented(package, experiment):
    assert undocumented_fields(experiment.config) == []


@pytest.mark.parametrize(("package", "experiment"), EXPERIMENTS, ids=IDS)
def test_no_entry_names_a_missing_field(package, experiment):
    """A stale or misspelt entry would document nothing (`field_docs` drops it silently)."""
    names = {field.name for field in dataclasses.fields(experiment.config)}
    for cls in experiment.config.__mro__:
        if dataclasses.is_dataclass(cls) and cls.__doc__:
            assert set(_attributes_section(cls.__doc__)) <= names, cls.__name__


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
    assert "nothing" not in _attributes_section(_Base.__doc__)
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
